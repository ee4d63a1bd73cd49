"""gevent scenarios, each run in a fresh interpreter (``monkey.patch_all()`` is process-wide).

    python -m tests.green._gevent_scenarios hold locked before

prints one JSON line with what the scenario saw. ``hold POLICY WHERE``: a greenlet holds the
client inside a slow call; a second one calls it; a bystander greenlet that never touches the
client ticks. WHERE is where the proxy was made: ``before`` the patch, ``after`` it, or in an
unpatched parent that forks a child which patches afterwards (``fork-os``: ``os.fork()``, with
at-fork hooks, as gunicorn ``-k gevent --preload``; ``fork-c``: fork() from C, no hooks, as
uWSGI ``--gevent``). ``per_thread``: the meaning of per_thread under gevent, and its log line.

Synchronisation is by events (gevent's, once patched); every wait has a timeout.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import threading
from typing import Any

import safeclients

WAIT = 10.0  # seconds any event wait may take before the scenario reports failure
TICKS = 50  # bystander ticks required while the client is held


class SlowClient:
    """Counts how many greenlets are inside it at once; ``slow()`` waits for ``release``."""

    made = 0
    closed = 0

    def __init__(self) -> None:
        SlowClient.made += 1
        self.inside = 0
        self.max_inside = 0
        self.calls = 0
        self.entered: Any = None  # set by the scenario (events made after the patch)
        self.release: Any = None

    def slow(self) -> int:
        self.inside += 1
        self.max_inside = max(self.max_inside, self.inside)
        self.calls += 1
        try:
            self.entered.set()
            if not self.release.wait(WAIT):
                raise TimeoutError("release never set")
            return self.calls
        finally:
            self.inside -= 1

    def close(self) -> None:
        SlowClient.closed += 1


def make_proxy(policy: str) -> Any:
    if policy == "locked":
        return safeclients.locked(SlowClient)
    if policy == "pooled":
        return safeclients.pooled(SlowClient, size=1)
    raise SystemExit(f"unknown policy {policy!r}")


def patch() -> None:
    """``patch_all()``; with ``GREEN_CONTROL=1``, first unsubscribe safeclients' renewal (the
    control run: shows what the scenario sees without it)."""
    import os

    from gevent import monkey

    if os.environ.get("GREEN_CONTROL") == "1":
        import zope.event

        from safeclients import _green

        zope.event.subscribers.remove(_green.on_patch)
    monkey.patch_all()


def hold(proxy: Any) -> dict[str, Any]:
    """The scenario proper; runs patched, in the main greenlet."""
    import gevent
    import gevent.event

    with safeclients.checkout(proxy) as raw:
        instance = raw
    instance.entered = gevent.event.Event()
    instance.release = gevent.event.Event()
    ticks = [0]
    ticked = gevent.event.Event()
    stop = gevent.event.Event()

    def bystander() -> None:
        while not stop.is_set():
            ticks[0] += 1
            if ticks[0] >= TICKS:
                ticked.set()
            gevent.sleep(0)

    holder = gevent.spawn(proxy.slow)
    if not instance.entered.wait(WAIT):
        return {"error": "holder never entered"}
    instance.entered.clear()
    waiter = gevent.spawn(proxy.slow)
    ticker = gevent.spawn(bystander)
    served = ticked.wait(WAIT)
    # The waiter has had TICKS turns of the hub: if the lock let it in, it is inside now.
    inside_while_held = instance.inside
    waiter_entered = instance.entered.is_set()
    instance.release.set()
    gevent.joinall([holder, waiter], timeout=WAIT)
    stop.set()
    ticker.join(WAIT)
    return {
        "bystander_served": bool(served),
        "ticks": ticks[0],
        "inside_while_held": inside_while_held,
        "waiter_entered_while_held": waiter_entered,
        "max_inside": instance.max_inside,
        "results": sorted(g.value for g in (holder, waiter) if g.successful()),
        "errors": [repr(g.exception) for g in (holder, waiter) if g.exception is not None],
        "waits": safeclients.stats(proxy).waits,
        "created": safeclients.stats(proxy).created,
    }


def scenario_hold(policy: str, where: str) -> dict[str, Any]:
    if where == "after":
        patch()
        return hold(make_proxy(policy))
    if where == "before":
        proxy = make_proxy(policy)
        patch()
        return hold(proxy)
    if where in ("fork-os", "fork-c"):
        from tests.lib.forking import FORKS, run_in_child

        proxy = make_proxy(policy)
        # The master used the proxy before forking (gunicorn --preload apps often do).
        with safeclients.checkout(proxy):
            pass

        def child() -> dict[str, Any]:
            patch()
            return hold(proxy)

        fork = FORKS[{"fork-os": "os.fork", "fork-c": "c_fork"}[where]]
        result: dict[str, Any] = run_in_child(fork, child)
        return result
    raise SystemExit(f"unknown place {where!r}")


def scenario_per_thread() -> dict[str, Any]:
    """per_thread made before the patch: per greenlet after it, one log line, closed at exit."""
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("safeclients").addHandler(handler)

    @safeclients.per_thread
    def client() -> SlowClient:
        return SlowClient()

    patch()
    import gevent

    seen: list[int] = []

    def request() -> None:
        with safeclients.checkout(client) as raw:
            seen.append(id(raw))
            gevent.sleep(0)

    greenlets = [gevent.spawn(request) for _ in range(10)]
    gevent.joinall(greenlets, timeout=WAIT)
    del greenlets
    gevent.sleep(0)  # let the hub drop its reference to the last greenlet it ran
    gc.collect()
    text = stream.getvalue()
    return {
        "distinct": len(set(seen)),
        "requests": len(seen),
        "log_lines": text.count("runs under gevent"),
        "log_names_factory": "scenario_per_thread.<locals>.client" in text,
        "log_names_pooled": "safeclients.pooled" in text,
        "live_after": safeclients.stats(client).live,
        "closed": SlowClient.closed,
    }


def scenario_guarded() -> dict[str, Any]:
    """guarded made before the patch; two greenlets make its first use at once, and the
    factory yields to the hub (a connect). Its creation lock must not block the OS thread."""
    import time

    class Connecting:
        def __init__(self) -> None:
            time.sleep(0.05)  # gevent's sleep once patched: the greenlet yields mid-creation

        def m(self) -> int:
            return 1

    proxy = safeclients.guarded(Connecting)
    patch()
    import gevent

    greenlets = [gevent.spawn(proxy.m) for _ in range(2)]
    gevent.joinall(greenlets, timeout=WAIT)
    return {"results": [g.value for g in greenlets]}


def scenario_per_process_yield() -> dict[str, Any]:
    """per_process made before the patch; two greenlets make its first use at once and the
    factory yields to the hub (a connect). Its creation lock must be greenlet-aware."""
    import time

    made = [0]

    class Connecting:
        def __init__(self) -> None:
            made[0] += 1
            time.sleep(0.05)  # gevent's sleep once patched: the greenlet yields mid-creation

        def m(self) -> int:
            return made[0]

    proxy = safeclients.per_process(Connecting)
    patch()
    import gevent

    greenlets = [gevent.spawn(proxy.m) for _ in range(4)]
    gevent.joinall(greenlets, timeout=WAIT)
    return {
        "results": [g.value for g in greenlets],
        "errors": [repr(g.exception) for g in greenlets if g.exception is not None],
        "made": made[0],
    }


class Cursor:
    """A derived object that refers back to its connection (what makes it one: ``_escape``)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def execute(self) -> int:
        return self.connection.id

    def close(self) -> None:
        pass


class Connection:
    count = 0

    def __init__(self) -> None:
        Connection.count += 1
        self.id = Connection.count

    def cursor(self) -> Cursor:
        return Cursor(self)

    def commit(self) -> int:
        return self.id


def scenario_pooled_pin(where: str) -> dict[str, Any]:
    """pooled(size=2) made ``before`` or ``after`` the patch. Greenlets interleave: each
    opens a cursor, yields to the hub (the others run), then calls ``db.commit()`` while its
    cursor is open: the commit must run on the cursor's connection (the greenlet's pin)."""
    if where == "before":
        db = safeclients.pooled(Connection, size=2)
        patch()
    else:
        patch()
        db = safeclients.pooled(Connection, size=2)
    import gevent

    def unit() -> tuple[int, int]:
        cur = db.cursor()
        try:
            on = cur.execute()
            gevent.sleep(0.001)  # the other greenlets open their cursors meanwhile
            return on, db.commit()
        finally:
            cur.close()

    greenlets = [gevent.spawn(unit) for _ in range(2)]
    gevent.joinall(greenlets, timeout=WAIT)
    later = [gevent.spawn(unit) for _ in range(8)]  # more units than connections: they wait
    gevent.joinall(later, timeout=WAIT)
    pairs = [g.value for g in greenlets + later if g.successful()]
    return {
        "pairs": pairs,
        "mismatched": sum(1 for on, committed in pairs if on != committed),
        "errors": [repr(g.exception) for g in greenlets + later if g.exception is not None],
        "distinct_in_first_two": len({on for on, _ in pairs[:2]}),
        "live": safeclients.stats(db).live,
    }


def scenario_guarded_overlap(on_conflict: str) -> dict[str, Any]:
    """guarded made before the patch: greenlet A is inside ``slow()`` (it yields to the hub
    there); greenlet B calls ``quick()``: two greenlets of one OS thread inside one client."""

    class Client:
        def __init__(self) -> None:
            self.entered: Any = None
            self.release: Any = None

        def slow(self) -> str:
            self.entered.set()
            if not self.release.wait(WAIT):
                raise TimeoutError("release never set")
            return "left"

        def quick(self) -> int:
            return 7

    client = Client()
    proxy = safeclients.guarded(client, on_conflict=on_conflict)
    patch()
    import gevent
    import gevent.event

    client.entered, client.release = gevent.event.Event(), gevent.event.Event()
    first = gevent.spawn(proxy.slow)
    if not client.entered.wait(WAIT):
        return {"error": "first never entered"}
    second = gevent.spawn(proxy.quick)
    second.join(WAIT)
    client.release.set()
    first.join(WAIT)
    alternate = [gevent.spawn(proxy.quick) for _ in range(10)]  # one after another: no conflict
    gevent.joinall(alternate, timeout=WAIT)
    return {
        "first": first.value,
        "second": second.value,
        "second_error": repr(second.exception) if second.exception is not None else None,
        "conflicts": safeclients.stats(proxy).conflicts,
        "alternate": [g.value for g in alternate],
    }


def scenario_timeout(what: str) -> dict[str, Any]:
    """pooled(size=1), patched; a ``gevent.Timeout`` cuts off the health check (``check``)
    or the close of an instance being retired (``close``). The slot must stay usable."""
    patch()
    import time

    import gevent

    slow = [True]
    closes = [0]

    class Client:
        def m(self) -> int:
            return 1

        def close(self) -> None:
            closes[0] += 1
            if what == "close" and slow[0]:
                time.sleep(WAIT)  # gevent's sleep: cut off by the Timeout

    def check(client: Client) -> bool:
        if what == "check" and slow[0]:
            time.sleep(WAIT)
        return True

    if what == "check":
        proxy = safeclients.pooled(Client, size=1, timeout=WAIT, check=check, check_interval=0)
    else:
        proxy = safeclients.pooled(Client, size=1, timeout=WAIT, max_lifetime=0.01)
    proxy.m()  # one instance, back in the pool
    time.sleep(0.02)  # past max_lifetime (close): retired at the next use
    cut = False
    try:
        with gevent.Timeout(0.05):
            proxy.m()  # the check (or the retiring close) yields, and is cut off
    except gevent.Timeout:
        cut = True
    slow[0] = False
    results = []
    for _ in range(3):
        with gevent.Timeout(WAIT):  # a lost slot would wait here until PoolTimeout
            results.append(proxy.m())
    stats = safeclients.stats(proxy)
    return {"cut": cut, "results": results, "live": stats.live, "created": stats.created}


def main(argv: list[str]) -> None:
    if argv[0] == "hold":
        result = scenario_hold(argv[1], argv[2])
    elif argv[0] == "per_thread":
        result = scenario_per_thread()
    elif argv[0] == "guarded":
        result = scenario_guarded()
    elif argv[0] == "per_process_yield":
        result = scenario_per_process_yield()
    elif argv[0] == "pooled_pin":
        result = scenario_pooled_pin(argv[1])
    elif argv[0] == "guarded_overlap":
        result = scenario_guarded_overlap(argv[1])
    elif argv[0] == "timeout":
        result = scenario_timeout(argv[1])
    else:
        raise SystemExit(f"unknown scenario {argv[0]!r}")
    result["thread"] = threading.current_thread().name
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
