"""Command line: ``python -m safeclients audit MODULE [MODULE ...] [--json] [--profiles MODULE]``
and ``python -m safeclients prove MODULE:APP [--path /x ...]`` (``safeclients._prove.cli``, which
documents its own exit statuses: 0 nothing unsafe seen, 1 unsafe use seen, 2 usage, 3 not run).

Imports the modules (from the current directory, as ``python -m`` puts it on ``sys.path``),
lists the unsafe client globals found by ``safeclients.audit.find_unsafe`` and exits with
``EXIT_FOUND`` when there is any, so it can gate a CI job. Objects already wrapped by
safeclients are listed as safe and do not change the exit status. Client profiles come from
``safeclients.profiles``, from the entry points of group ``safeclients.profiles``, and from
each ``--profiles MODULE`` (a module whose import registers profiles).

Exit statuses (named below): 0 nothing unsafe found, 1 unsafe globals found, 2 usage error
(the audit's own command line), 3 could not audit: a module's import raised, was interrupted,
called ``sys.exit()`` or outlived ``--import-timeout`` (IMPORT_TIMEOUT seconds by default), or
loading profiles failed; a sentence on stderr says which. While
a module is imported, ``sys.argv`` holds only its name (an app that parses its command line
at import sees no audit arguments) and its output goes to stderr (``--json`` stays clean).
Threads the app started at import are not waited for: the CLI names the non-daemon ones and
exits without joining them.

Runs in its own process, never inside a server; importing an app module runs its import-time
code, which is exactly what the audit wants to see (connections opened before a fork).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import os
import signal
import sys
import textwrap
import threading
import types
from collections.abc import Iterator, Sequence

from safeclients import profiles
from safeclients._prove import cli as prove_cli
from safeclients.audit import Finding, find_unsafe

EXIT_CLEAN = 0
EXIT_FOUND = 1
EXIT_USAGE = 2
EXIT_NOT_AUDITED = 3

#: How long one module's import may take before the audit gives up on it (--import-timeout).
IMPORT_TIMEOUT = 60.0

WIDTH = 100
INDENT = " " * 11


class _ImportTimedOut(BaseException):
    """Raised by the SIGALRM handler inside an import that outlived --import-timeout.

    A BaseException, so that the app's own ``except Exception`` cannot swallow it. Private to
    the CLI: ``_import()`` turns it into a sentence; it never leaves this module.
    """


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "prove":
        return prove_cli.run(args)
    modules: list[types.ModuleType] = []
    why = _load_profiles(args.profiles, args.import_timeout)
    for name in args.modules:
        if why is not None:
            break
        module = _import(name, args.import_timeout)
        if isinstance(module, str):
            why = f"{name}: importing it {module}"
        else:
            modules.append(module)
    findings: list[Finding] = []
    if why is None:
        try:
            findings = find_unsafe(modules)
        except Exception as exc:
            why = (
                f"{', '.join(args.modules)}: walking their globals raised "
                f"{type(exc).__name__}: {exc}"
            )
    if why is not None:
        print(f"safeclients audit: could not audit {why}", file=sys.stderr)
        return EXIT_NOT_AUDITED
    unsafe = [f for f in findings if not f.wrapped]
    wrapped = [f for f in findings if f.wrapped]
    if args.json:
        print(
            json.dumps(
                {
                    "modules": args.modules,
                    "unsafe": [dataclasses.asdict(f) for f in unsafe],
                    "wrapped": [dataclasses.asdict(f) for f in wrapped],
                },
                indent=2,
            )
        )
    else:
        print(render(args.modules, unsafe, wrapped))
    return EXIT_FOUND if unsafe else EXIT_CLEAN


def _load_profiles(modules: Sequence[str], timeout: float) -> str | None:
    """Load the entry points' profiles and import each ``--profiles`` module; None when all
    went well, else why the audit cannot run."""
    try:
        profiles.load_entry_points()
    except Exception as exc:
        return (
            f"anything: loading the entry points of group safeclients.profiles raised "
            f"{type(exc).__name__}: {exc}"
        )
    for name in modules:
        module = _import(name, timeout)
        if isinstance(module, str):
            return f"anything: importing the --profiles module {name} {module}"
    return None


def _import(name: str, timeout: float) -> types.ModuleType | str:
    """Import a module; any way its import ends early (an exception, an interrupt,
    ``sys.exit()``, ``timeout`` seconds passing) is returned as the end of a sentence saying
    what happened."""
    try:
        with _importing(name), _deadline(timeout):
            return importlib.import_module(name)
    except _ImportTimedOut:
        return (
            f"did not finish within {timeout:g} s (--import-timeout): it waits for "
            "something at import (a server, a thread, input)"
        )
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        return _what_happened(exc)


def _what_happened(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return (
            f"called sys.exit({exc.code!r}), so nothing was audited (an app that exits or "
            "requires command-line arguments at import cannot be audited)"
        )
    return f"raised {type(exc).__name__}" + (f": {exc}" if str(exc) else "")


@contextlib.contextmanager
def _importing(name: str) -> Iterator[None]:
    """While ``name`` is imported: ``sys.argv`` is just its name, its output goes to stderr."""
    argv = sys.argv
    sys.argv = [name]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.argv = argv


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise _ImportTimedOut in the main thread after ``seconds`` (0: no deadline).

    SIGALRM interrupts blocking waits (lock acquisition, socket reads) on POSIX, so an import
    that waits forever is cut off. The previous handler is restored afterwards.
    """
    if seconds == 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: types.FrameType | None) -> None:
        raise _ImportTimedOut

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def exit_now(status: int) -> None:
    """End the CLI with ``status`` without waiting for threads the audited modules started.

    A non-daemon thread started at import would keep the interpreter alive at exit (it
    joins them); the CLI names them on stderr and leaves with ``os._exit`` after flushing.
    """
    lingering = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if not lingering:
        sys.exit(status)
    names = ", ".join(repr(t.name) for t in lingering[:10])
    print(
        f"safeclients audit: the audited modules started "
        f"{_plural(len(lingering), 'non-daemon thread')} at import ({names}); "
        "the audit does not wait for them.",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m safeclients",
        description="Tools for safeclients. 'prove' runs a WSGI app under a prefork-threaded "
        "server and reports clients used unsafely; 'audit' lists module globals that are "
        "clients unsafe under threaded, pre-forking servers.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    audit = commands.add_parser(
        "audit",
        help="list unsafe client globals; exit 1 when any is found",
        description="Import MODULEs and list their globals (and those of the modules they use "
        "from the same package) that are known non-thread-safe or non-fork-safe "
        "clients. Exit status: 0 none found, 1 found, 2 usage error, 3 could not "
        "audit (an import failed, was interrupted or exited).",
    )
    audit.add_argument(
        "modules", nargs="+", metavar="MODULE", help="dotted module name, e.g. myapp.wsgi"
    )
    audit.add_argument("--json", action="store_true", help="print the findings as JSON")
    audit.add_argument(
        "--profiles",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, for the client profiles it registers (repeatable)",
    )
    audit.add_argument(
        "--import-timeout",
        type=_seconds,
        default=IMPORT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on a module whose import takes longer (exit 3); 0: wait "
        f"without limit (default {IMPORT_TIMEOUT:g})",
    )
    prove = commands.add_parser(
        "prove",
        help="run a WSGI app under the proving ground; exit 1 when a client is used unsafely",
        description="Run MODULE:APP as uWSGI would (imported once in a master, forked into "
        "--workers processes of --threads threads, core 0 on each worker's main thread), with "
        "every client it holds watched by a reporting detector; send --requests GETs over the "
        "--paths; report each client used by two threads at once or in two processes. Exit "
        "status: 0 nothing unsafe seen, 1 unsafe use seen, 2 usage error, 3 could not run "
        "(import error, server did not start).",
    )
    prove_cli.add_arguments(prove)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds >= 0")
    return value


def render(modules: Sequence[str], unsafe: Sequence[Finding], wrapped: Sequence[Finding]) -> str:
    """The human-readable report: one block per unsafe global, then the wrapped ones."""
    lines = [
        f"safeclients audit of {', '.join(modules)}: "
        f"{_plural(len(unsafe), 'unsafe global')}, {len(wrapped)} already wrapped"
    ]
    for f in unsafe:
        lines += ["", f"UNSAFE  {f.where}"]
        lines += _field("type", f.type_name)
        lines += _field("why", f.reason)
        if f.safety:
            lines += _field("client", f.safety)
        lines += _field("state", _state(f))
        if f.aliases:
            lines += _field("also at", ", ".join(f.aliases))
        lines += _field("use", f.suggest)
    for f in wrapped:
        lines += ["", f"SAFE    {f.where}"]
        lines += _field("type", f.type_name)
        lines += _field("policy", f.reason)
    return "\n".join(lines)


def _state(f: Finding) -> str:
    if f.connected is None:
        return "unknown (no probe registered for this type)"
    if f.connected:
        return (
            f"OPEN connection at import time: {f.connection} "
            "(a server that forks after import shares it between all workers)"
        )
    return "no open connection now (it connects on first use, then every thread shares it)"


def _field(label: str, text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=f"  {label:<9}", subsequent_indent=INDENT)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


if __name__ == "__main__":
    exit_now(main())
