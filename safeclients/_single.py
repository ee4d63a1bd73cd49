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

Which thread runs what: ``create_instance`` and ``discard_instance`` run in request threads
(slow paths); ``renew`` at creation, in the fork child's first caller, or where gevent's patch
runs (see ``Policy.renew``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from safeclients import _uses
from safeclients._discard import DiscardOn
from safeclients._policy import Policy
from safeclients.errors import ForkedUseError

T = TypeVar("T")


class SingleInstancePolicy(Policy[T]):
    """One instance per process, from a factory or given (see the module docstring)."""

    instance: T | None

    def __init__(
        self,
        factory: Callable[[], T] | None,
        *,
        instance: T | None = None,
        close: Callable[[T], object] | None = None,
        discard_on: DiscardOn | None = None,
        checkable: bool = True,
    ) -> None:
        # The process that made (or was given) the instance, and, in a fork child that
        # inherited an instance it cannot recreate, that process's pid.
        self._creator_pid = os.getpid()
        self._foreign_pid: int | None = None
        super().__init__(
            factory, close=close, discard_on=discard_on, instance=instance, checkable=checkable
        )
        self.instance = instance
        if instance is not None and self.tracker is not None:
            self.tracker.created(instance)

    def renew(self, *, drop: bool) -> None:
        # Guards the creation and replacement of `instance`; calls themselves never take it.
        self._create_lock = threading.Lock()
        if drop:
            inherited = getattr(self, "instance", None)
            if inherited is not None and not self.replaceable:
                self._foreign_pid = self._creator_pid
            self.instance = None

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

    def take_instance(self, final: bool) -> T | None:
        """For ``dispose``: the instance to close, now out of the policy (None: nothing to
        close, or a given instance kept because nothing could recreate it)."""
        with self._create_lock:
            if final:
                self._final = True
            self._foreign_pid = None
            obj = self.instance
            if obj is None or (not self.replaceable and not final):
                return None
            self.instance = None
            return obj

    def prime(self) -> None:
        if self.instance is None:
            self.create_instance()

    def existing(self) -> T | None:
        return self.instance

    def live(self) -> int:
        return 0 if self.instance is None else 1


__all__ = ["SingleInstancePolicy"]
