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


def main(argv: list[str]) -> None:
    if argv[0] == "hold":
        result = scenario_hold(argv[1], argv[2])
    elif argv[0] == "per_thread":
        result = scenario_per_thread()
    elif argv[0] == "guarded":
        result = scenario_guarded()
    else:
        raise SystemExit(f"unknown scenario {argv[0]!r}")
    result["thread"] = threading.current_thread().name
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
