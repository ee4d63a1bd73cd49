"""The per-call table, once per wrapt mode, each in a child process.

wrapt picks its C extension or its pure-Python classes at import time
(``WRAPT_DISABLE_EXTENSIONS=1`` selects the latter), so each mode needs its own
interpreter. Both modes run in children started the same way, so neither
inherits the parent's imports or heap. The child prints one JSON document;
``python -m benchmarks.micro --number N --repeats R`` is that child.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.cases import per_call_cases
from benchmarks.harness import Case, measure_interleaved

MODES = {"C": {}, "pure": {"WRAPT_DISABLE_EXTENSIONS": "1"}}
CHILD_TIMEOUT = 600.0


def wrapt_mode() -> str:
    """Which wrapt implementation this process uses: "C" or "pure"."""
    switch = importlib.import_module("wrapt.__wrapt__")
    return "C" if switch._using_c_extension else "pure"


def measure(number: int, repeats: int) -> dict[str, Any]:
    """Run the per-call table in this process; a JSON-able dict of rows."""
    return measure_cases(per_call_cases(), number=number, repeats=repeats)


def measure_cases(cases: Sequence[Case], *, number: int, repeats: int) -> dict[str, Any]:
    """Time ``cases`` interleaved in this process: a child's JSON-able result (its rows, in
    the order of ``cases``, and this process's wrapt mode)."""
    results = measure_interleaved(cases, number=number, repeats=repeats)
    rows = []
    for samples in results.values():
        case = samples.case
        row: dict[str, Any] = {"key": case.key, "label": case.label, "baseline": case.baseline}
        if samples.skipped is not None:
            row["skipped"] = samples.skipped
        else:
            row.update(min=samples.min, median=samples.median, samples=samples.ns)
        rows.append(row)
    return {"mode": wrapt_mode(), "number": number, "repeats": repeats, "rows": rows}


def run_child(
    mode: str, *, number: int, repeats: int, module: str = "benchmarks.micro"
) -> dict[str, Any]:
    """Measure the table of ``module`` (a child taking ``--number`` and ``--repeats`` and
    printing JSON with its ``mode``) in a fresh interpreter using wrapt mode ``mode``."""
    env = {k: v for k, v in os.environ.items() if k != "WRAPT_DISABLE_EXTENSIONS"}
    env.update(MODES[mode])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            "--number",
            str(number),
            "--repeats",
            str(repeats),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{module} child ({mode}) exited {proc.returncode}: {proc.stderr[-2000:]}"
        )
    result: dict[str, Any] = json.loads(proc.stdout)
    if result["mode"] != mode:
        raise RuntimeError(f"asked for wrapt mode {mode}, the child ran {result['mode']}")
    return result


def child_main(
    measure: Callable[[int, int], dict[str, Any]], description: str, *, number: int, repeats: int
) -> None:
    """The command line of a child that ``run_child`` starts: print ``measure``'s JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--number", type=int, default=number, help="calls per sample")
    parser.add_argument("--repeats", type=int, default=repeats, help="interleaved rounds")
    args = parser.parse_args()
    json.dump(measure(args.number, args.repeats), sys.stdout)


def main() -> None:
    child_main(measure, __doc__ or "", number=20_000, repeats=15)


if __name__ == "__main__":
    main()
