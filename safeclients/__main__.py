"""Command line: ``python -m safeclients audit MODULE [MODULE ...] [--json]``.

Imports the modules (from the current directory, as ``python -m`` puts it on ``sys.path``),
lists the unsafe client globals found by ``safeclients.audit.find_unsafe`` and exits with
``EXIT_FOUND`` when there is any, so it can gate a CI job. Objects already wrapped by
safeclients are listed as safe and do not change the exit status.

Runs in its own process, never inside a server; importing an app module runs its import-time
code, which is exactly what the audit wants to see (connections opened before a fork).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import textwrap
import types
from collections.abc import Sequence

from safeclients.audit import Finding, find_unsafe

EXIT_CLEAN = 0
EXIT_FOUND = 1
EXIT_USAGE = 2

WIDTH = 100
INDENT = " " * 11


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    modules: list[types.ModuleType] = []
    for name in args.modules:
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:  # any import-time failure (ImportError, a refused connection)
            print(f"safeclients audit: cannot import {name}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return EXIT_USAGE
    findings = find_unsafe(modules)
    unsafe = [f for f in findings if not f.wrapped]
    wrapped = [f for f in findings if f.wrapped]
    if args.json:
        print(json.dumps({"modules": args.modules,
                          "unsafe": [dataclasses.asdict(f) for f in unsafe],
                          "wrapped": [dataclasses.asdict(f) for f in wrapped]}, indent=2))
    else:
        print(render(args.modules, unsafe, wrapped))
    return EXIT_FOUND if unsafe else EXIT_CLEAN


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m safeclients",
        description="Tools for safeclients. 'audit' lists module globals that are clients "
                    "unsafe under threaded, pre-forking servers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    audit = commands.add_parser(
        "audit", help="list unsafe client globals; exit 1 when any is found",
        description="Import MODULEs and list their globals (and those of the modules they use "
                    "from the same package) that are known non-thread-safe or non-fork-safe "
                    "clients. Exit status: 0 none found, 1 found, 2 usage or import error.")
    audit.add_argument("modules", nargs="+", metavar="MODULE",
                       help="dotted module name, e.g. myapp.wsgi")
    audit.add_argument("--json", action="store_true", help="print the findings as JSON")
    return parser


def render(modules: Sequence[str], unsafe: Sequence[Finding], wrapped: Sequence[Finding]) -> str:
    """The human-readable report: one block per unsafe global, then the wrapped ones."""
    lines = [f"safeclients audit of {', '.join(modules)}: "
             f"{_plural(len(unsafe), 'unsafe global')}, {len(wrapped)} already wrapped"]
    for f in unsafe:
        lines += ["", f"UNSAFE  {f.where}"]
        lines += _field("type", f.type_name)
        lines += _field("why", f.reason)
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
        return (f"OPEN connection at import time: {f.connection} "
                "(a server that forks after import shares it between all workers)")
    return "no open connection now (it connects on first use, then every thread shares it)"


def _field(label: str, text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=f"  {label:<9}", subsequent_indent=INDENT)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


if __name__ == "__main__":
    sys.exit(main())
