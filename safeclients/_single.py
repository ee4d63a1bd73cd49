"""The base of the policies with one instance per process: ``locked``, ``per_process``,
``guarded``.

What they share, written once: the one ``instance``, created on first use under
``_create_lock`` (``create_instance``), replaced after an error that means it is broken
(``discard_instance``), handed to ``dispose`` (``take_instance``); and what happens across a
fork. With a factory, the child simply creates its own instance on first use. Given an
existing instance (``locked(client)``, ``guarded(client)``), there is nothing to recreate it
with: the child's first use raises ``ForkedUseError`` naming both processes, rather than
silently sharing the parent's connection (and the parent's instance is never closed by the
child).

Health (``check``, ``check_interval``, ``max_lifetime``, ``max_idle``; ``_health``): the
compiled ``USE_HEALTH`` vets the instance when it is due (``vetted``), at most once per
``check_interval``, in one thread at a time; an instance that a block or a derived object holds
is never retired (its transaction would continue on a new connection): it is vetted after that
use ends. ``locked`` vets under its lock and closes a retired instance at once; ``per_process``
shares its instance with calls of other threads that may still be running, so a retired one is
closed at the next vetting (``check_interval`` later) or at ``dispose``. An existing instance
given without a factory has nothing to replace it: no health variant is compiled for it.

Which thread runs what: ``create_instance``, ``discard_instance`` and ``vetted`` run in request
threads (slow paths); ``renew`` at creation, in the fork child's first caller, or where
gevent's patch runs (see ``Policy.renew``).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from typing import ClassVar, TypeVar

from safeclients import _uses
from safeclients._discard import DiscardOn
from safeclients._health import (
    NO_HEALTH,
    Ages,
    CheckPending,
    Health,
    async_check_refused,
    next_due,
    retire_note,
)
from safeclients._policy import Policy
from safeclients._use import Use
from safeclients.errors import ForkedUseError

T = TypeVar("T")


class SingleInstancePolicy(Policy[T]):
    """One instance per process, from a factory or given (see the module docstring)."""

    instance: T | None
    #: Whether a retired instance is closed at the next vetting rather than at once (other
    #: threads' calls may still run on it: ``per_process``).
    close_retired_later: ClassVar[bool] = False

    def __init__(
        self,
        factory: Callable[[], T] | None,
        *,
        instance: T | None = None,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
        checkable: bool = True,
        health: Health = NO_HEALTH,
    ) -> None:
        # The process that made (or was given) the instance, and, in a fork child that
        # inherited an instance it cannot recreate, that process's pid.
        self._creator_pid = os.getpid()
        self._foreign_pid: int | None = None
        self.health = health
        # When the instance was made and last used (health variant only).
        self.ages = Ages()
        # Whether each use notes its time (max_idle needs it; nothing else does).
        self.track_idle = health.max_idle is not None
        super().__init__(
            factory, close=close, discard_on=discard_on, instance=instance, checkable=checkable
        )
        self.instance = instance
        if instance is not None and self.tracker is not None:
            self.tracker.created(instance)

    def use_for(self, *, health: bool) -> Use:
        # A given instance (no factory) cannot be replaced: nothing to vet it for.
        return super().use_for(health=health and self.replaceable)

    def renew(self, *, drop: bool) -> None:
        # Guards the creation and replacement of `instance`; calls themselves never take it.
        self._create_lock = threading.Lock()
        # Held by the one thread vetting the instance; the others go on without waiting.
        self._vet_lock = threading.Lock()
        if drop:
            inherited = getattr(self, "instance", None)
            if inherited is not None and not self.replaceable:
                self._foreign_pid = self._creator_pid
            self.instance = None
            self.ages.clear()
            # When the instance is next vetted (health variant); set when one is created.
            self.due = math.inf
            # Retired instances waiting for their close (close_retired_later); a fork child
            # drops the parent's without closing them.
            self._retired: list[T] = []

    def create_instance(self) -> T:
        """Slow path: the first use in this process (or after dispose or discard); refuses
        (``InstanceDiscardedError``) inside a block whose instance was discarded."""
        _uses.refuse_lost(self)
        with self._create_lock:
            obj = self.instance
            if obj is not None:
                return obj
            if self._foreign_pid is not None:
                raise self._forked_error()
            obj = self.create()
            self._creator_pid = os.getpid()
            self.ages.born(obj)
            self.due = next_due(self.health, self.effective_check is not None)
            self.instance = obj
            return obj

    def _forked_error(self) -> ForkedUseError:
        client = self.client_type.__name__ if self.client_type is not None else "client"
        return ForkedUseError(
            f"this {self.kind} proxy wraps a {client} instance created in process "
            f"{self._foreign_pid}, and process {os.getpid()} is a fork of it: both processes "
            f"would share its connection, and {self.kind}() was given the instance itself, so "
            f"it cannot make a new one. Give {self.kind}() a factory (a function or class that "
            f"returns the client): it then creates a fresh instance in each process"
        )

    def discard_instance(self, obj: T) -> None:
        """A call on ``obj`` raised one of ``discard_on``: close it, so the next use creates a
        new one (only with a factory: a given instance is all there is). The context's pin on
        it, if any, is lost (``_uses``)."""
        _uses.lose_pinned(self, obj)
        with self._create_lock:
            if not self.replaceable or self.instance is not obj:
                return
            self.instance = None
        self.close_instance(obj, discarded=True)

    def on_lost(self, obj: T) -> None:
        self.discard_instance(obj)

    def retire_from_loop(self, obj: T) -> bool:
        """The loop the async instance is bound to ends or is gone: the next use (the next
        loop's) makes a new one."""
        with self._create_lock:
            if not self.replaceable or self.instance is not obj:
                return False
            self.instance = None
        self.ages.forget(obj)
        self.close_instance(obj, discarded=False)
        return True

    def vetted(self, obj: T) -> T | None:
        """Health variant, slow path: the instance is due. Returns it if it may be used, or
        None once it is retired (the caller creates the next one). One thread vets at a time;
        an instance a block or a derived object holds is left for after that use."""
        if not self._vet_lock.acquire(False):
            return obj  # another thread is vetting it right now
        try:
            self._close_retired()
            if self.instance is not obj:
                return obj  # replaced meanwhile: this call runs on what it got
            checked = self.effective_check is not None
            if self.held_by_a_use(obj):
                self.due = next_due(self.health, checked)
                return obj
            try:
                reason = self.ages.verdict(self.health, self.effective_check, obj)
            except CheckPending as pending:
                raise async_check_refused(self.kind, pending) from None
            if not reason:
                self.due = next_due(self.health, checked)
                return obj
            retire_note(self.kind, obj, reason)
            with self._create_lock:
                if self.instance is obj:
                    self.instance = None
            self.ages.forget(obj)
            if self.close_retired_later:
                self._retired.append(obj)
            else:
                self.close_instance(obj, discarded=True)
            return None
        finally:
            self._vet_lock.release()

    def held_by_a_use(self, obj: T) -> bool:
        """Whether a block or a derived object holds ``obj`` now (never retire it then)."""
        return _uses.held_now(self, obj)

    def _close_retired(self) -> None:
        """Close the instances retired at an earlier vetting (``close_retired_later``)."""
        retired, self._retired = self._retired, []
        for obj in retired:
            self.close_instance(obj, discarded=True)

    def take_instance(self, final: bool) -> T | None:
        """For ``dispose``: the instance to close, now out of the policy (None: nothing to
        close, or a given instance kept because nothing could recreate it)."""
        with self._create_lock:
            if final:
                self._final = True
            self._foreign_pid = None
            obj = self.instance
            if obj is None or (not self.replaceable and not final):
                obj = None
            else:
                self.instance = None
        with self._vet_lock:
            self._close_retired()
        return obj

    def inherited(self) -> list[T]:
        return [obj for obj in (self.instance, *self._retired) if obj is not None]

    def prime(self) -> None:
        if self.instance is None:
            self.create_instance()

    def existing(self) -> T | None:
        return self.instance

    def live(self) -> int:
        return 0 if self.instance is None else 1


__all__ = ["SingleInstancePolicy"]
