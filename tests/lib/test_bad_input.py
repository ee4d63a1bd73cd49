"""Bad input to the library (issue 7 item 4): a named error or a logged, contained failure; none
poisons the proxy for later calls."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import safeclients
from tests.lib.fakes import FakeClient

FACTORY_POLICIES: dict[str, Callable[..., Any]] = {
    "per_thread": safeclients.per_thread,
    "locked": safeclients.locked,
    "pooled": safeclients.pooled,
    "guarded": safeclients.guarded,
}


@pytest.mark.parametrize("make", [safeclients.per_thread, safeclients.pooled])
@pytest.mark.parametrize("factory", [42, "client", FakeClient()])
def test_non_callable_factory_is_a_type_error(make: Callable[..., Any], factory: object) -> None:
    with pytest.raises(safeclients.FactoryError) as info:
        make(factory)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, safeclients.SafeClientsError)
    assert not isinstance(info.value, AttributeError)
    assert type(factory).__name__ in str(info.value)


@pytest.mark.parametrize("name", sorted(FACTORY_POLICIES))
def test_factory_returning_none(name: str) -> None:
    def make_nothing() -> None:
        return None

    proxy = FACTORY_POLICIES[name](make_nothing)
    with pytest.raises(safeclients.FactoryError) as info:
        proxy.ping()
    assert "make_nothing" in str(info.value) and "None" in str(info.value)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("name", sorted(FACTORY_POLICIES))
def test_factory_raising_reaches_caller_unchanged_and_proxy_recovers(name: str) -> None:
    attempts: list[int] = []

    class Boom(Exception):
        pass

    def flaky() -> FakeClient:
        attempts.append(1)
        if len(attempts) == 1:
            raise Boom("backend down at startup")
        return FakeClient()

    proxy = FACTORY_POLICIES[name](flaky)
    with pytest.raises(Boom, match="backend down at startup"):
        proxy.ping()
    assert proxy.ping("again")[1] == "again"
    assert safeclients.stats(proxy).created == 1


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "4"])
def test_pool_size_refused(size: Any) -> None:
    with pytest.raises(ValueError, match="size"):
        safeclients.pooled(FakeClient, size=size)
    with pytest.raises(ValueError, match="size"):
        safeclients.pooled(size=size)


@pytest.mark.parametrize("timeout", [-0.001, -5, "1"])
def test_pool_timeout_refused(timeout: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        safeclients.pooled(FakeClient, timeout=timeout)


def test_pool_timeout_zero_is_allowed_and_fails_fast() -> None:
    proxy = safeclients.pooled(FakeClient, size=1, timeout=0)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            proxy.ping()
        except BaseException as exc:
            errors.append(exc)

    with safeclients.checkout(proxy):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(30)
    assert [type(error) for error in errors] == [safeclients.PoolTimeout]
    assert proxy.ping(1)[1] == 1


def test_bad_on_conflict_and_discard_on() -> None:
    with pytest.raises(ValueError, match="on_conflict"):
        safeclients.guarded(FakeClient, on_conflict="ignore")
    with pytest.raises(TypeError, match="discard_on"):
        safeclients.pooled(FakeClient, discard_on=("OSError",))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(FACTORY_POLICIES))
def test_use_after_final_dispose(name: str) -> None:
    proxy = FACTORY_POLICIES[name](FakeClient)
    proxy.ping()
    safeclients.dispose(proxy, final=True)
    assert safeclients.stats(proxy).live == 0
    with pytest.raises(safeclients.PoolClosed):
        proxy.ping()
    with pytest.raises(safeclients.PoolClosed):
        with safeclients.checkout(proxy):
            pass
    safeclients.dispose(proxy, final=True)  # idempotent


@pytest.mark.parametrize("name", sorted(FACTORY_POLICIES))
def test_close_raising_is_logged_and_contained(name: str, caplog: pytest.LogCaptureFixture) -> None:
    def bad_close(client: FakeClient) -> None:
        raise RuntimeError("close exploded")

    proxy = FACTORY_POLICIES[name](FakeClient, close=bad_close)
    first = proxy.ping()[0]
    with caplog.at_level(logging.WARNING, logger="safeclients"):
        safeclients.dispose(proxy)
    assert "close exploded" in caplog.text
    assert [r.name for r in caplog.records] == ["safeclients"]
    assert proxy.ping()[0] != first, "the proxy is usable after a failing close"
    stats = safeclients.stats(proxy)
    assert (stats.closed, stats.close_failed) == (0, 1), "only a close that worked counts"


def test_locked_instance_dispose_keeps_it_without_factory() -> None:
    raw = FakeClient()
    proxy = safeclients.locked(raw)
    safeclients.dispose(proxy)
    assert raw.close_calls == 0 and proxy.ping()[0] == raw.id
    safeclients.dispose(proxy, final=True)
    assert raw.close_calls == 1
