"""``hammer(target, *args)``: call ``target`` from N threads at once, then across a fork, and fail
on a client used by two threads at once or in two processes.

What is watched, for the duration of the call only (then put back):

* when ``target`` is a method of a client (``hammer(cache.get, "k")``): that client; a global's
  method can be named as a string, ``hammer("myapp.db:conn.execute", "select 1")``, and the
  global itself is then replaced for the run (every code path that reads it sees the detector);
* the clients held by the modules in ``watch`` (names or modules), found as the proving ground
  finds them (``slots``: globals and one level down); by default, when ``target`` is a plain
  function, its own module's.

Then: ``threads`` threads, released together by a barrier, each make ``calls`` calls; then the
process forks (when ``fork``), and the child and the parent each run the same threads again at
the same time. The clients are described (connection state) right before the fork. The verdict
(``verdict.read``) decides; ``UnsafeUseFound`` carries it as text. Calls that raised, with
nothing unsafe seen, raise ``HammerCallsFailed`` (the first traceback in the message): a test
of calls that never worked proves nothing. A thread or child still running after ``timeout``
seconds: ``HammerTimeout`` (the child is killed). Nothing to watch (no client in the modules, no
client's method, no safeclients proxy either): ``NothingWatched`` before any call, as such a
hammer could never fail.

Process and thread: runs in the caller's thread (a test); the threads it starts are joined
(bounded) before it forks, so the fork copies no thread of ours. The child never returns into
the caller: it leaves with ``os._exit`` whatever happens. Works with any client profile; a
safeclients proxy is never watched (it is the fix), its calls just run.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeclients import profiles
from safeclients._prove import slots, verdict
from safeclients._prove.detector import EVENTS_GLOB, Sink, Watched
from safeclients._prove.errors import (
    HammerCallsFailed,
    HammerTimeout,
    NothingWatched,
    UnsafeUseFound,
)
from safeclients.control import is_proxy

__all__ = ["hammer"]

_CHILD_FAILED = 2  # the child's exit status when its threads outlived the timeout
_ERRORS_PER_THREAD = 1  # tracebacks kept per thread (the rest are counted)


def hammer(
    target: Callable[..., object] | str,
    *args: object,
    threads: int = 8,
    calls: int = 20,
    fork: bool = True,
    watch: Iterable[str | types.ModuleType] = (),
    timeout: float = 30.0,
) -> verdict.Verdict:
    """Run ``target(*args)`` from ``threads`` threads, ``calls`` times each, then again in a
    forked child and the parent at once; raise ``UnsafeUseFound`` on unsafe use (module
    docstring). Returns the verdict when nothing unsafe was seen."""
    if not isinstance(threads, int) or threads < 2:
        raise ValueError(f"threads must be an int >= 2 (two threads can overlap), got {threads!r}")
    if not isinstance(calls, int) or calls < 1:
        raise ValueError(f"calls must be an int >= 1, got {calls!r}")
    if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
    modules = [importlib.import_module(m) if isinstance(m, str) else m for m in watch]
    if isinstance(target, str):
        target, home = _resolve(target)
        modules = modules or [home]
    if not callable(target):
        raise TypeError(f"hammer() needs a callable, not a {type(target).__name__}")
    if not modules and isinstance(target, types.FunctionType):
        defined_in = sys.modules.get(target.__module__)
        modules = [defined_in] if defined_in is not None else []
    places, unwatched, proxies = slots.find(modules)
    bound: list[object] = []
    owner = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    if is_proxy(owner):
        proxies += 1  # a safeclients proxy's method: the fix, nothing to watch
    elif (
        owner is not None
        and name
        and not isinstance(owner, types.ModuleType)
        and type(owner) is not Watched
        and profiles.profile_for(type(owner)) is not None
    ):
        places.append(slots.Place(f"{_name(target)}.__self__", owner, bound.append, named=False))
    if not places and not proxies:
        where = ", ".join(m.__name__ for m in modules) or "no module"
        raise NothingWatched(
            f"hammer({_name(target)}) has nothing to watch: no client of a known type in "
            f"{where}, and the target is not a client's method, so no call could fail; pass "
            "watch=[the modules that hold the clients], or a client's method as the target"
        )
    directory = Path(tempfile.mkdtemp(prefix="safeclients-hammer-"))
    sink = Sink(directory)
    watching = slots.watch(places, sink)
    call: Callable[..., object] = getattr(bound[0], name) if bound else target
    try:
        rounds = _Calls(call, args, threads, calls, timeout, sink)
        if not rounds.run():
            raise HammerTimeout(
                f"hammer({_name(target)}): a thread was still calling after {timeout:g} s"
            )
        watching.write(directory, unwatched, proxies)  # the connection state at the fork
        if fork:
            rounds.across_fork(_name(target))
        found = verdict.read(directory)
        errors = _errors(directory)
    finally:
        watching.restore()
        shutil.rmtree(directory, ignore_errors=True)
    shape = f"{threads} threads x {calls} calls" + (", then across a fork" if fork else "")
    if found.unsafe:
        raise UnsafeUseFound(
            f"hammer({_name(target)}): {shape}: {len(found.unsafe)} unsafe use"
            f"{'' if len(found.unsafe) == 1 else 's'} seen:\n{found.render()}"
        )
    if errors:
        count = sum(e.get("count", 1) for e in errors)
        raise HammerCallsFailed(
            f"hammer({_name(target)}): {shape}: {count} call{'' if count == 1 else 's'} "
            f"raised (nothing unsafe seen, but the calls did not work); the first, in pid "
            f"{errors[0]['pid']}:\n{errors[0]['trace']}"
        )
    return found


def _resolve(spec: str) -> tuple[Callable[..., object], types.ModuleType]:
    """``"module:name.method"`` -> the method of the global, and its module (watched)."""
    module_name, colon, path = spec.partition(":")
    if not colon or not module_name or not path:
        raise ValueError(
            f"hammer({spec!r}): a string target is 'module:global.method' "
            "(myapp.db:conn.execute), naming a global's method"
        )
    module = importlib.import_module(module_name)
    found: object = module
    for part in path.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ValueError(f"hammer({spec!r}): {module_name} has no {path}") from None
    if not callable(found):
        raise TypeError(f"hammer({spec!r}) names a {type(found).__name__}, not a callable")
    return found, module


def _name(target: Callable[..., object]) -> str:
    return getattr(target, "__qualname__", None) or repr(target)


@dataclass(frozen=True)
class _Calls:
    """One round of calls: ``threads`` threads released together, ``calls`` calls each; errors
    go to ``sink``."""

    call: Callable[..., object]
    args: tuple[object, ...]
    threads: int
    calls: int
    timeout: float
    sink: Sink

    def run(self) -> bool:
        """Make the calls; True when every thread finished within ``timeout``."""
        barrier = threading.Barrier(self.threads)

        def body() -> None:
            try:
                barrier.wait(self.timeout)
            except threading.BrokenBarrierError:
                return  # another thread never came: the join below reports the timeout
            kept = failed = 0
            for _ in range(self.calls):
                try:
                    self.call(*self.args)
                except Exception:
                    failed += 1
                    if kept < _ERRORS_PER_THREAD:
                        kept += 1
                        trace = traceback.format_exc(limit=12)
                        self.sink.write({"e": "error", "c": -1, "trace": trace})
            if failed > kept:
                self.sink.write({"e": "error", "c": -1, "trace": "", "count": failed - kept})

        started = [
            threading.Thread(target=body, name=f"hammer-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for thread in started:
            thread.start()
        deadline = time.monotonic() + self.timeout
        for thread in started:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in started)

    def across_fork(self, label: str) -> None:
        """Fork; run the round in the child and here at once; wait for the child (bounded)."""
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python 3.12 warns when a process with threads forks: ours are all joined by now.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            status = _CHILD_FAILED
            try:
                if self.run():
                    status = 0
            finally:
                os._exit(status)
        finished = self.run()
        exit_status = _wait_child(pid, self.timeout)
        if exit_status is None:
            raise HammerTimeout(
                f"hammer({label}): the forked child was still running after "
                f"{self.timeout:g} s; killed"
            )
        if not finished or exit_status != 0:
            where = "the parent" if not finished else f"the forked child (exit {exit_status})"
            raise HammerTimeout(
                f"hammer({label}): a thread of {where} was still calling after {self.timeout:g} s"
            )


def _wait_child(pid: int, timeout: float) -> int | None:
    """The child's exit status, or None after killing it at ``timeout`` seconds.

    Waits on a pidfd (Linux >= 5.3: an event, no polling); elsewhere polls every 10 ms.
    """
    deadline = time.monotonic() + timeout
    pidfd = -1
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            if pidfd >= 0:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(min(0.01, left))
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _errors(directory: Path) -> list[dict[str, Any]]:
    """The ``error`` events of every process, the ones with a traceback first."""
    found: list[dict[str, Any]] = []
    for path in sorted(directory.glob(EVENTS_GLOB)):
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("e") == "error":
                found.append(event)
    return sorted(found, key=lambda e: not e["trace"])
