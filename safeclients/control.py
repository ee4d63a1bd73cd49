"""Module-level control of proxies: a proxy never grows attributes that could shadow the client's.

Also the interpreter-exit hook: every proxy is disposed with ``final=True`` (closing the instances
this process created); a daemon thread still using one afterwards gets ``PoolClosed``.
"""

from __future__ import annotations

import atexit
from types import TracebackType
from typing import Generic, TypeVar

from safeclients import _fork, _uses
from safeclients._policy import Policy
from safeclients._proxy import Proxy, policy_of
from safeclients.errors import CheckoutReused
from safeclients.stats import Stats

T = TypeVar("T")


def is_proxy(obj: object) -> bool:
    """Whether ``obj`` is a safeclients proxy (``type()``, not the ``__class__`` it reports)."""
    return issubclass(type(obj), Proxy)


class _Checkout(Generic[T]):
    """The context manager ``checkout`` returns: a class, not a generator, to keep it cheap.

    One object, one block: entering it again (or from a second thread) raises
    ``CheckoutReused`` instead of handing out a second instance that its one exit would
    mix up with the first. The block is the context's pin (``_uses``): calls through the proxy
    inside it run on the same instance, and a cursor closed inside it leaves it held.
    """

    __slots__ = ("_policy", "_block", "_ticket")

    def __init__(self, policy: Policy[T]) -> None:
        self._policy = policy
        self._block: _uses.Hold | None = None
        # One entry; list.pop() is atomic, so two threads entering at once cannot both get it.
        self._ticket = [True]

    def _take_ticket(self) -> None:
        try:
            self._ticket.pop()
        except IndexError:
            reused = True
        else:
            reused = False
        if reused:
            raise CheckoutReused(
                "this checkout() object was already entered: call safeclients.checkout(proxy) "
                "once per `with` block (and per thread)"
            )

    def __enter__(self) -> T:
        self._take_ticket()
        block = self._block = _uses.enter_block(self._policy)
        return block.pin.obj  # type: ignore[no-any-return]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        block, self._block = self._block, None
        if block is not None:
            _uses.exit_block(block, exc)

    # `async with checkout(proxy) as client:`: per_loop (the loop's instance; nothing held) and
    # pooled (the task holds one instance for the block; other tasks wait for another, in the
    # loop). Not locked, guarded, per_thread, per_process: their one instance (or lock) would be
    # shared by every task of the thread across the block's awaits.
    async def __aenter__(self) -> T:
        policy = self._policy
        if not policy.async_blocks:
            raise TypeError(
                f"`async with safeclients.checkout(...)` needs a per_loop or pooled proxy; this "
                f"one is {policy.kind}, whose lock or instance would be shared by every task of "
                f"the thread across the block's awaits: use `with safeclients.checkout(...)` in "
                f"sync code, or safeclients.per_loop / safeclients.pooled"
            )
        self._take_ticket()
        block = self._block = await _uses.enter_block_async(policy)
        return block.pin.obj  # type: ignore[no-any-return]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def checkout(proxy: T) -> _Checkout[T]:
    """Hold one raw client for a block: ``with safeclients.checkout(proxy) as client: ...``.

    ``locked``: the lock is held for the block. ``pooled``: the instance is checked out for the
    block (an exception from ``discard_on`` discards it). ``per_thread``: this thread's instance.
    ``guarded``: the block counts as one use. ``per_loop``: the running loop's instance, also as
    ``async with safeclients.checkout(proxy) as client:``. Do not keep the client after the block.
    """
    policy: Policy[T] = policy_of(proxy)
    return _Checkout(policy)


def dispose(proxy: object, *, final: bool = False) -> None:
    """Close every instance the proxy holds, in every thread (created in this process).

    The proxy stays usable and creates fresh instances, unless ``final=True``: then any later use
    raises ``PoolClosed``. A ``locked`` or ``guarded`` proxy around an existing instance (no
    factory) keeps it unless ``final=True``, as nothing could recreate it.
    """
    policy = policy_of(proxy)
    _fork.check()
    policy.dispose(final)


def stats(proxy: object) -> Stats:
    """A snapshot of the proxy's counters in this process (see ``safeclients.stats.Stats``)."""
    policy = policy_of(proxy)
    _fork.check()
    return policy.stats()


def policy_name(proxy: object) -> str:
    """``"per_thread"``, ``"per_process"``, ``"per_loop"``, ``"locked"``, ``"pooled"`` or
    ``"guarded"``."""
    return policy_of(proxy).kind


def _dispose_all_at_exit() -> None:
    """Interpreter exit, in the main thread: close what this process created."""
    _fork.check()
    for policy in _fork.live_policies():
        if isinstance(policy, Policy):
            policy.shutdown()


atexit.register(_dispose_all_at_exit)
