"""``_pending``: a call that could not get its instance now runs when awaited, in the loop that
awaits it. The policies' uses of it are in ``test_per_loop`` and ``test_pooled``; here, what a
``PendingCall`` is on its own (unit tier: fake async client, no sockets)."""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
from typing import Any

import pytest

import safeclients
from safeclients._pending import PendingCall
from tests.lib.fakes import AsyncFake


def test_a_pending_call_is_a_coroutine_to_asyncio() -> None:
    client = safeclients.per_loop(AsyncFake)
    pending = client.command("k")
    assert isinstance(pending, PendingCall)
    assert isinstance(pending, collections.abc.Coroutine) and inspect.isawaitable(pending)

    async def main() -> Any:
        return await asyncio.get_running_loop().create_task(pending)  # type: ignore[arg-type]

    assert asyncio.run(main())[1] == "k"


def test_a_pending_call_never_awaited_makes_nothing() -> None:
    client = safeclients.per_loop(AsyncFake)
    pending = client.command("k")
    pending.close()
    del pending
    assert safeclients.stats(client).created == 0


def test_a_sync_method_deferred_gives_its_result_when_awaited() -> None:
    # Whether a method returns an awaitable is only known once it ran: awaited, a deferred
    # sync method gives its plain result.
    client = safeclients.per_loop(Mixed)
    assert asyncio.run(client.size()) == 3


class Mixed(AsyncFake):
    def size(self) -> int:
        return 3


def test_async_with_on_a_result_that_is_no_context_manager_is_a_named_error() -> None:
    client = safeclients.per_loop(Mixed)
    pending = client.size()

    async def main() -> None:
        async with pending:
            pass  # pragma: no cover (refused)

    with pytest.raises(safeclients.AsyncUseError, match="not an async context manager"):
        asyncio.run(main())


def test_an_error_of_the_deferred_call_is_the_callers() -> None:
    class Failing(AsyncFake):
        def command(self, key: Any) -> Any:
            raise KeyError(key)

    client = safeclients.per_loop(Failing)
    with pytest.raises(KeyError):
        asyncio.run(client.command("k"))


def test_repr_names_the_call_and_the_policy() -> None:
    pending = safeclients.per_loop(AsyncFake).command("k")
    assert "command()" in repr(pending) and "per_loop" in repr(pending)
    pending.close()


@pytest.mark.parametrize(
    "use",
    [
        str,
        lambda p: f"{p}",
        bool,
        lambda p: p == 3,
        lambda p: p != 3,
        len,
        list,
        lambda p: 3 in p,
        lambda p: p[0],
        int,
        float,
        lambda p: [0, 1, 2, 3][p],
    ],
    ids=[
        "str",
        "format",
        "bool",
        "eq",
        "ne",
        "len",
        "iter",
        "in",
        "index",
        "int",
        "float",
        "as-index",
    ],
)
def test_a_deferred_sync_methods_value_is_never_a_silent_wrong_one(use: Any) -> None:
    # A pooled proxy in a loop with every instance in use defers a plain method; the pending
    # call is not its value: every use of it as one raises the policy's error (it used to give
    # its repr to str(), True to bool(), False to ==).
    client = safeclients.pooled(Mixed, size=1, timeout=5.0)

    async def main() -> Any:
        held, done = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with safeclients.checkout(client):  # the only instance is this task's
                held.set()
                await done.wait()

        task = asyncio.create_task(holder())
        await held.wait()
        pending = client.size()
        done.set()
        await task
        # There is an instance again, but this call was deferred already.
        assert isinstance(pending, PendingCall)
        with pytest.raises(safeclients.WouldBlockLoopError, match="await it first"):
            use(pending)
        return await pending

    assert asyncio.run(main()) == 3
