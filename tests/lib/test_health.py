"""Connections heal (issue 11): disconnect errors discard by default, health checks replace dead
instances before reuse, lifetimes and idle limits retire old ones."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import safeclients
from safeclients import profiles
from tests.lib.fakes import FakeClient

pytestmark = pytest.mark.usefixtures("call_path")


class Conn(FakeClient):
    """A connection the server can kill: every call on a dead one raises."""

    def __init__(self) -> None:
        super().__init__()
        self.alive = True
        self.pings = 0

    def query(self, value: Any) -> tuple[int, Any]:
        if not self.alive:
            raise OperationalError("(2013, 'Lost connection to server during query')")
        return self.id, value

    def ping(self, value: Any = None) -> tuple[int, Any]:
        self.pings += 1
        if not self.alive:
            raise OperationalError("(2006, 'server has gone away')")
        return self.id, value


class OperationalError(Exception):
    """Named as PEP 249 names it: every DB-API driver raises it for a lost connection."""


class InterfaceError(Exception):
    """PEP 249's other disconnect class (PyMySQL raises it on a closed connection)."""


def kill(proxy: Any) -> list[Conn]:
    """Kill every instance the proxy holds right now, server-side (as a restart does)."""
    killed = list(_all_instances(proxy))
    for conn in killed:
        conn.alive = False
    return killed


def _all_instances(proxy: Any) -> Iterator[Conn]:
    from safeclients._proxy import policy_of

    policy = policy_of(proxy)
    if hasattr(policy, "free"):
        yield from policy.free
    if hasattr(policy, "_records"):
        yield from policy._records.values()
    if getattr(policy, "instance", None) is not None:
        yield policy.instance


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
@pytest.mark.parametrize("make", [safeclients.per_thread, safeclients.pooled])
def test_pep249_disconnects_discard_by_default(make: Any, error: type[Exception]) -> None:
    proxy = make(Conn)
    first = proxy.query(1)[0]
    with pytest.raises(error):
        proxy.fail(error("gone"))
    assert proxy.query(1)[0] != first
    assert safeclients.stats(proxy).discarded == 1


LONG_LIVED = [
    safeclients.per_thread,
    safeclients.pooled,
    safeclients.locked,
    safeclients.per_process,
]


@pytest.mark.parametrize("make", LONG_LIVED)
def test_without_a_check_each_dead_instance_fails_once_then_heals(make: Any) -> None:
    proxy = make(Conn)
    proxy.query(0)
    kill(proxy)
    with pytest.raises(OperationalError):
        proxy.query(1)
    assert proxy.query(2)[1] == 2


@pytest.mark.parametrize("make", LONG_LIVED)
def test_check_replaces_a_dead_instance_before_it_is_used(make: Any) -> None:
    proxy = make(Conn, check=lambda conn: conn.ping(), check_interval=0)
    first = proxy.query(0)[0]
    kill(proxy)
    assert proxy.query(1)[0] != first, "the dead one was replaced, no error reached the caller"
    safeclients.dispose(proxy)  # per_process closes a retired instance later: by now
    stats = safeclients.stats(proxy)
    assert (stats.created, stats.discarded) == (2, 1)


def test_check_interval_bounds_how_often_the_check_runs() -> None:
    proxy = safeclients.pooled(Conn, size=1, check=lambda conn: conn.ping(), check_interval=3600)
    for n in range(5):
        proxy.query(n)
    with safeclients.checkout(proxy) as conn:
        assert conn.pings == 0, "an instance used moments ago is presumed alive"


def test_check_returning_false_means_dead() -> None:
    proxy = safeclients.pooled(Conn, size=1, check=lambda conn: conn.alive, check_interval=0)
    first = proxy.query(0)[0]
    kill(proxy)
    assert proxy.query(1)[0] != first


@pytest.mark.parametrize("option", ["max_lifetime", "max_idle"])
def test_limits_of_zero_replace_an_instance_at_every_reuse(option: str) -> None:
    proxy = safeclients.pooled(Conn, size=1, **{option: 0})
    ids = {proxy.query(n)[0] for n in range(3)}
    assert len(ids) == 3
    assert safeclients.stats(proxy).live == 1


def test_per_thread_max_idle_replaces_an_instance_idle_that_long() -> None:
    proxy = safeclients.per_thread(Conn, max_idle=0)
    assert len({proxy.query(n)[0] for n in range(3)}) == 3, "each reuse came after max_idle=0"
    assert safeclients.stats(proxy).live == 1, "each replaced instance was closed"
    kept = safeclients.per_thread(Conn, max_idle=3600)
    assert len({kept.query(n)[0] for n in range(3)}) == 1, "used moments ago: kept"
    for p in (proxy, kept):
        safeclients.dispose(p)


def test_per_thread_max_idle_counts_from_the_end_of_the_last_use() -> None:
    from safeclients._proxy import policy_of

    proxy = safeclients.per_thread(Conn, max_idle=3600)
    first = proxy.query(0)[0]
    ages = policy_of(proxy).ages
    ((key, times),) = ages._times.items()
    times[1] -= 7200  # as if the last use ended two hours ago
    assert proxy.query(1)[0] != first, "idle longer than max_idle: replaced"
    safeclients.dispose(proxy)


def test_per_thread_max_lifetime_replaces_the_threads_instance() -> None:
    proxy = safeclients.per_thread(Conn, max_lifetime=0)
    assert len({proxy.query(n)[0] for n in range(3)}) == 3


# -- the single-instance policies: locked and per_process (_single) ----------------------------

SINGLE = [safeclients.locked, safeclients.per_process]


@pytest.mark.parametrize("option", ["max_lifetime", "max_idle"])
@pytest.mark.parametrize("make", SINGLE)
def test_single_instance_limits_replace_the_instance(make: Any, option: str) -> None:
    proxy = make(Conn, **{option: 0})
    assert len({proxy.query(n)[0] for n in range(3)}) == 3
    safeclients.dispose(proxy)
    stats = safeclients.stats(proxy)
    assert stats.live == 0, "every retired instance was closed"
    assert stats.created >= 3  # the generic path's attribute lookup is a use of its own


@pytest.mark.parametrize(
    ("make", "option"),
    [
        *((make, "max_lifetime") for make in SINGLE),
        (safeclients.per_thread, "max_idle"),
        (safeclients.per_thread, "max_lifetime"),
    ],
)
def test_an_instance_is_never_retired_under_a_block_or_a_cursor(make: Any, option: str) -> None:
    from tests.lib.test_derived import Connection

    proxy = make(Connection, **{option: 0})
    with safeclients.checkout(proxy):
        assert len({proxy.whoami()[0] for _ in range(3)}) == 1, "retired inside the block"
    cursor = proxy.cursor()
    assert len({proxy.whoami()[0] for _ in range(3)}) == 1, "retired under the cursor"
    kept = proxy.whoami()[0]
    cursor.close()
    assert proxy.whoami()[0] != kept, "vetted again once the cursor ended"
    safeclients.dispose(proxy)


def test_locked_around_a_given_instance_has_nothing_to_replace_it_with() -> None:
    conn = Conn()
    proxy = safeclients.locked(conn, check=lambda c: c.ping(), check_interval=0)
    proxy.query(0)
    conn.alive = False
    with pytest.raises(OperationalError):
        proxy.query(1)
    assert conn.pings == 0, "no check runs for an instance nothing could replace"


def test_per_process_check_runs_at_most_once_per_interval() -> None:
    proxy = safeclients.per_process(Conn, check=lambda conn: conn.ping(), check_interval=3600)
    for n in range(5):
        proxy.query(n)
    assert proxy.__wrapped__.pings == 0


def test_per_process_closes_a_retired_instance_at_the_next_vetting() -> None:
    proxy = safeclients.per_process(Conn, max_lifetime=0)
    with safeclients.checkout(proxy) as first:  # one use each (the generic path has two)
        pass
    with safeclients.checkout(proxy) as second:  # retires `first`: other threads' calls
        assert second is not first  # may still run on it
    assert first.close_calls == 0
    with safeclients.checkout(proxy):  # the next vetting closes it
        pass
    assert first.close_calls == 1


def conn_profile(**options: Any) -> profiles.Profile:
    """A profile for Conn whose check pings, with ``options`` on top."""
    return profiles.Profile(
        qualname=f"{Conn.__module__}.{Conn.__qualname__}",
        reason="test client",
        suggest="pooled",
        sources=("tests/lib/test_health.py",),
        check=lambda conn: conn.ping(),
        **options,
    )


def test_a_profile_check_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = conn_profile()
    profiles.register(profile)
    try:
        proxy = safeclients.pooled(Conn, check_interval=0)
        first = proxy.query(0)[0]
        kill(proxy)
        assert proxy.query(1)[0] != first
    finally:
        profiles.unregister(profile.qualname)


@pytest.fixture
def profile_checking_every_use() -> Iterator[profiles.Profile]:
    """Conn's profile with a check that runs before every use (``check_interval=0``), as
    paho-mqtt's: its failures are return codes, only its check can notice a dead client."""
    profile = conn_profile(check_interval=0)
    profiles.register(profile)
    try:
        yield profile
    finally:
        profiles.unregister(profile.qualname)


@pytest.mark.usefixtures("profile_checking_every_use")
@pytest.mark.parametrize("make", LONG_LIVED)
def test_a_profiles_check_interval_is_the_default(make: Any) -> None:
    proxy = make(Conn)
    first = proxy.query(0)[0]
    kill(proxy)
    assert proxy.query(1)[0] != first, "the profile's check ran before this use, at once"
    safeclients.dispose(proxy)


@pytest.mark.usefixtures("profile_checking_every_use")
@pytest.mark.parametrize("make", LONG_LIVED)
def test_the_apps_check_interval_beats_the_profiles(make: Any) -> None:
    proxy = make(Conn, check_interval=3600)
    proxy.query(0)
    kill(proxy)
    with pytest.raises(OperationalError):
        proxy.query(1)  # used moments ago: presumed alive, as the app asked
    safeclients.dispose(proxy)


@pytest.mark.parametrize("interval", [-1, float("inf"), "0", True])
def test_a_profiles_bad_check_interval_is_refused(interval: Any) -> None:
    with pytest.raises(ValueError, match="check_interval"):
        profiles.Profile(
            qualname="x.Y", reason="r", suggest="pooled", sources=(), check_interval=interval
        )


@pytest.mark.parametrize(
    "options",
    [{"check": 42}, {"check_interval": -1}, {"max_lifetime": float("nan")}, {"max_idle": "5"}],
)
def test_bad_health_options_are_refused_with_a_sentence(options: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError), match="pooled"):
        safeclients.pooled(Conn, **options)


def test_an_explicit_check_on_a_pool_runs_before_every_reuse() -> None:
    """psycopg_pool's behaviour: asked for explicitly, the check runs at each checkout."""
    proxy = safeclients.pooled(Conn, size=1, check=lambda conn: conn.ping())
    for n in range(3):
        proxy.query(n)
    with safeclients.checkout(proxy) as conn:
        # At least before the 2nd and 3rd call and this checkout (the generic path makes two
        # uses a call); with an interval it would be 0: each reuse came moments after the last.
        assert conn.pings >= 3, f"checked {conn.pings} times"


@pytest.mark.parametrize(
    "make", [safeclients.per_thread, safeclients.locked, safeclients.per_process]
)
def test_an_async_check_where_nothing_can_await_it_is_refused(make: Any) -> None:
    # A coroutine is truthy: an async check= run in sync code used to pass every instance,
    # dead or not, with a "never awaited" warning. A policy that checks in sync code refuses it.
    async def alive(client: Any) -> bool:
        return False  # pragma: no cover (never awaited)

    proxy = make(FakeClient, check=alive, check_interval=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the check's coroutine is closed, never left unawaited
        with pytest.raises(safeclients.AsyncUseError, match="returned an awaitable"):
            for _ in range(2):  # the check runs at the first use or the next
                proxy.ping()
