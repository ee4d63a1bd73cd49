"""Health of long-lived instances: a check before reuse, a maximum lifetime, a maximum idle time.

What every database pool offers, with psycopg_pool's names: ``check`` (a callable that raises,
or returns False, when the instance is dead: a ping), ``max_lifetime`` and ``max_idle`` (seconds
after which an instance is replaced). ``check_interval`` bounds the cost: an instance used within
the last ``check_interval`` seconds is presumed alive and not checked (0: check before every
reuse). Its default depends on who asked: an explicit ``check=`` on a pool runs before every
reuse (psycopg_pool's behaviour: the caller asked for it); the check a client profile brings by
default, and every ``per_thread`` check, run at most once per ``DEFAULT_CHECK_INTERVAL``, unless
the profile names its own ``check_interval`` (paho-mqtt: 0, a check with no round trip, and the
only way to notice a lost broker, whose failures are return codes, not exceptions).
A retired instance is closed quietly (one log line if its close fails: a connection the
server already dropped often refuses a polite close).

Which policy uses what: ``pooled`` vets an instance when it leaves the free list; ``per_thread``
vets the calling thread's instance at most once per ``check_interval`` (or when its lifetime
ends, or at its first use after ``max_idle`` seconds unused); ``locked`` and ``per_process``
(``_single``) vet their one instance the same way, never
while a block or a derived object holds it. A policy compiled with no health option pays
nothing for this module.

Which thread runs what: every method runs in the request thread that is about to use the
instance; ``Ages`` is touched by one thread per instance at a time (the one holding it).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from safeclients.errors import AsyncUseError

log = logging.getLogger("safeclients")

#: Default seconds an instance may go unused before a ``check`` runs again.
DEFAULT_CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class Health:
    """The validated health options of one proxy."""

    check: Callable[[Any], object] | None = None
    check_interval: float = DEFAULT_CHECK_INTERVAL
    max_lifetime: float | None = None
    max_idle: float | None = None
    interval_given: bool = False  # check_interval= was passed (a profile's never overrides it)

    @property
    def active(self) -> bool:
        return self.check is not None or self.max_lifetime is not None or self.max_idle is not None


#: No health option: the default of the policies (frozen, so one shared instance is safe).
NO_HEALTH = Health()


def _seconds(kind: str, option: str, value: object, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{kind}({option}=...) must be a number of seconds, got {value!r}")
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0 or math.isinf(seconds):
        raise ValueError(f"{kind}({option}=...) must be a finite number >= 0, got {value!r}")
    return seconds


def health_options(
    kind: str,
    *,
    check: Callable[[Any], object] | None,
    check_interval: float | None,
    max_lifetime: float | None,
    max_idle: float | None,
    explicit_check_interval: float = DEFAULT_CHECK_INTERVAL,
) -> Health:
    """Validate the options with a sentence each, when the proxy is made. ``check_interval``
    None: ``explicit_check_interval`` for an explicit ``check=``, else the default."""
    if check is not None and not callable(check):
        raise TypeError(f"{kind}(check=...) must be a callable taking the client, got {check!r}")
    if check_interval is None:
        interval = explicit_check_interval if check is not None else DEFAULT_CHECK_INTERVAL
    else:
        seconds = _seconds(kind, "check_interval", check_interval, allow_none=False)
        assert seconds is not None
        interval = seconds
    return Health(
        check=check,
        check_interval=interval,
        max_lifetime=_seconds(kind, "max_lifetime", max_lifetime, allow_none=True),
        max_idle=_seconds(kind, "max_idle", max_idle, allow_none=True),
        interval_given=check_interval is not None,
    )


def with_profile_interval(given: Health, profile_interval: float | None) -> Health:
    """``given`` (the app's options) with the client profile's check interval where the app
    named neither a check nor an interval: the profile's check is then the one in force."""
    if profile_interval is None or given.check is not None or given.interval_given:
        return given
    return replace(given, check_interval=profile_interval)


class Ages:
    """When each instance was created and last given back (monotonic seconds), by identity."""

    def __init__(self) -> None:
        # id(instance) -> [created, last given back]; entries removed when the instance goes.
        self._times: dict[int, list[float]] = {}

    def born(self, obj: object) -> None:
        now = time.monotonic()
        self._times[id(obj)] = [now, now]

    def used(self, obj: object) -> None:
        times = self._times.get(id(obj))
        if times is not None:
            times[1] = time.monotonic()

    def fresh(self, obj: object) -> bool:
        """Whether ``obj`` was never given back since it was made (a policy that notes every
        give-back, ``pooled``, checks only an instance being *reused*)."""
        times = self._times.get(id(obj))
        return times is not None and times[0] == times[1]

    def idle(self, obj: object) -> float:
        """Seconds since ``obj`` was last given back (0.0 for an instance not recorded)."""
        times = self._times.get(id(obj))
        return time.monotonic() - times[1] if times is not None else 0.0

    def forget(self, obj: object) -> None:
        self._times.pop(id(obj), None)

    def clear(self) -> None:
        self._times = {}

    def verdict(self, health: Health, check: Callable[[Any], object] | None, obj: Any) -> str:
        """Why ``obj`` must be replaced before this use, or "" if it may be used."""
        times = self._times.get(id(obj))
        if times is None:
            return ""
        now = time.monotonic()
        born, used = times
        if health.max_lifetime is not None and now - born >= health.max_lifetime:
            return f"it is {now - born:.1f} s old (max_lifetime={health.max_lifetime:g})"
        idle = now - used
        if health.max_idle is not None and idle >= health.max_idle:
            return f"it was idle {idle:.1f} s (max_idle={health.max_idle:g})"
        if check is not None and idle >= health.check_interval:
            try:
                alive = check(obj)
            except Exception as exc:
                alive = exc
            if inspect.isawaitable(alive):
                raise CheckPending(alive)  # an async check: the caller awaits it, or refuses
            return self.judged(obj, alive)
        return ""

    def judged(self, obj: Any, alive: object) -> str:
        """A check's outcome (its result, or the Exception it raised): why ``obj`` must be
        replaced, or "" (and it counts as used now)."""
        if isinstance(alive, Exception):
            return f"its check raised {type(alive).__name__}: {alive}"
        if alive is False:
            return "its check returned False"
        times = self._times.get(id(obj))
        if times is not None:
            times[1] = time.monotonic()
        return ""


class CheckPending(Exception):  # noqa: N818 (a signal, not an error)
    """Internal: the check returned an awaitable (an async check, ``async def alive(r): return
    await r.ping()``). ``pooled`` awaits it in the loop (``Ages.judged`` takes the outcome);
    a policy that checks in sync code refuses it (``async_check_refused``)."""

    def __init__(self, awaitable: Any) -> None:
        super().__init__()
        self.awaitable = awaitable


def async_check_refused(kind: str, pending: CheckPending) -> AsyncUseError:
    """The error for an async check where nothing can await it (the awaitable is closed: no
    "never awaited" warning). Never a silent pass: a coroutine is truthy."""
    awaitable = pending.awaitable
    if inspect.iscoroutine(awaitable):
        awaitable.close()
    return AsyncUseError(
        f"the check= of a {kind} proxy returned an awaitable ({type(awaitable).__name__}), and "
        f"a {kind} proxy checks in sync code, where nothing can await it: give it a sync "
        f"check, or use safeclients.pooled inside a coroutine (it awaits an async check in "
        f"the loop)"
    )


def next_due(health: Health, checked: bool) -> float:
    """When an instance vetted now is next vetted: the soonest of its lifetime, its idle limit
    and (when a check is in force) the check interval; ``inf`` without any."""
    steps = [limit for limit in (health.max_lifetime, health.max_idle) if limit is not None]
    if checked:
        steps.append(health.check_interval)
    return time.monotonic() + min(steps) if steps else math.inf


def retire_note(kind: str, obj: object, reason: str) -> None:
    log.info("safeclients: a %s proxy replaces a %s: %s", kind, type(obj).__name__, reason)
