"""``per_process``: one instance per process, shared by its threads without a lock.

For clients that are thread-safe but not fork-safe: a gRPC channel (gRPC's documentation: a
channel is safe to share between threads, but must not be used across ``fork()`` unless it was
created after it), an ``httpx.Client``, redis-py's ``Redis`` (its connection pool is thread-safe,
and resets itself only when it notices the pid changed). Module-global, created at import in a
master that then forks, such a client is shared by every worker; ``per_process`` creates it
lazily in each process instead, and never serializes calls.

Across a fork: ``after_fork`` drops the inherited instance without closing it (the parent still
uses it); the child's first use creates its own. Detected without at-fork hooks (``_fork``), so
it holds under uWSGI's C fork too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from safeclients._discard import DiscardOn
from safeclients._factory import proxy_or_decorator
from safeclients._health import NO_HEALTH, Health, health_options
from safeclients._proxy import make_proxy
from safeclients._single import SingleInstancePolicy
from safeclients._use import Use

T = TypeVar("T")


# The use of the one instance (see _use): nothing to give back. A lost pin (``_uses``) sends
# every call to the slow path, which refuses the context whose block lost its instance.
_GET = """\
obj = policy.instance
if obj is None or policy.lost_open:
    obj = policy.create_instance()
"""
# Health variant: appended to _GET.
_VET = """\
elif policy.due <= monotonic():
    obj = policy.vetted(obj)
    if obj is None:
        obj = policy.create_instance()
if policy.track_idle:
    policy.ages.used(obj)
"""
_PUT_BROKEN = "policy.discard_instance(obj)"


class PerProcessPolicy(SingleInstancePolicy[T]):
    kind = "per_process"
    # The one instance is shared by every context: a discard by one must lose the others'
    # pins on it (``_uses.lose_pinned``), so the open holds per instance are counted.
    track_holds = True

    # Calls of other threads may still run on a retired instance: close it later (_single).
    close_retired_later = True

    USE = Use(get=_GET + "token = None\n", put_ok="", put_broken=_PUT_BROKEN)
    # With check=/max_lifetime=/max_idle= (or a profile's check): vet the instance when it is
    # due (``_single``), at most once per check_interval, one thread at a time.
    USE_HEALTH = Use(get=_GET + _VET + "token = None\n", put_ok="", put_broken=_PUT_BROKEN)

    def __init__(
        self,
        factory: Callable[[], T],
        *,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
        health: Health = NO_HEALTH,
    ) -> None:
        super().__init__(factory, close=close, discard_on=discard_on, health=health)

    def dispose(self, final: bool) -> None:
        # Other threads may be inside a call on it (no lock serializes them): a thread-safe
        # client's close is expected to cope, as it would without safeclients.
        obj = self.take_instance(final)
        if obj is not None:
            self.close_instance(obj, discarded=False)


@overload
def per_process(
    factory: Callable[[], T],
    *,
    close: Callable[[T], object] | None = ...,
    discard_on: DiscardOn | None = ...,
    check: Callable[[Any], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
) -> T: ...


@overload
def per_process(
    factory: None = ...,
    *,
    close: Callable[[Any], object] | None = ...,
    discard_on: DiscardOn | None = ...,
    check: Callable[[Any], object] | None = ...,
    check_interval: float | None = ...,
    max_lifetime: float | None = ...,
    max_idle: float | None = ...,
) -> Callable[[Callable[[], T]], T]: ...


def per_process(
    factory: Callable[[], T] | None = None,
    *,
    close: Callable[[T], object] | None = None,
    discard_on: DiscardOn | None = None,
    check: Callable[[T], object] | None = None,
    check_interval: float | None = None,
    max_lifetime: float | None = None,
    max_idle: float | None = None,
) -> T | Callable[[Callable[[], T]], T]:
    """A proxy over one instance per process, created on first use, shared by the process's
    threads without a lock: for thread-safe clients that are not fork-safe (gRPC channels).

    Usable as a bare decorator, with arguments, or as a call. A call raising one of
    ``discard_on`` replaces the instance.

    Health: ``check(client)`` runs on the instance at most once per ``check_interval`` seconds
    (by one thread; the others go on meanwhile) and replaces it if it raises or returns False
    (default: the client profile's check); ``max_lifetime`` and ``max_idle`` (seconds) replace
    an instance older, or unused longer. An instance held by a block or a derived object is
    never replaced under it; a replaced one is closed at the next vetting (other threads' calls
    may still be running on it) or at ``dispose``.
    """
    health = health_options(
        "per_process",
        check=check,
        check_interval=check_interval,
        max_lifetime=max_lifetime,
        max_idle=max_idle,
    )

    def make(factory: Callable[[], T]) -> T:
        return make_proxy(
            PerProcessPolicy(factory, close=close, discard_on=discard_on, health=health)
        )

    return proxy_or_decorator(factory, make)
