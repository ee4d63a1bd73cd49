"""Tables as markdown, and the issue's targets as PASS/FAIL lines.

Every function takes the JSON-able result of one section and returns markdown
text; the runner prints it and stores it in ``docs/benchmarks.md`` between
section markers, so a run of one section (``--only e2e``) replaces that section
and keeps the others.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import cases

MIB = 1024 * 1024
RSS_GROWTH_LIMIT = 5 * MIB
CONTENDED_LIMIT = 2.0
#: A per-thread record per exited thread would add at least ``small`` objects.
GC_GROWTH_LIMIT = 100

PROJECT_ROWS = (
    cases.PER_THREAD,
    cases.LOCKED,
    cases.POOLED,
    cases.POOLED_CHECKOUT,
    cases.GUARDED,
    "pooled_8",
)


@dataclass(frozen=True)
class Target:
    """``row`` / ``anchor`` (min ns/call of each) must be at most ``limit``."""

    row: str
    anchor: str
    limit: float


MICRO_TARGETS = (
    Target(cases.PER_THREAD, cases.FORK_SAFE_LOCAL, 1.25),
    Target(cases.LOCKED, cases.PID_LOCK, 1.25),
    Target(cases.POOLED, cases.LIFO_POOL, 0.5),
    Target(cases.POOLED, cases.SQLALCHEMY_POOL, 0.2),
)

#: Not in the issue: the same limits against hand-written code that also skips the
#: system call (the MADV_WIPEONFORK check safeclients itself uses).
SAME_TRICK_TARGETS = (
    Target(cases.PER_THREAD, cases.FORK_SAFE_LOCAL_WIPE, 1.25),
    Target(cases.LOCKED, cases.WIPE_LOCK, 1.25),
)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table, padded so it also reads well on a terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _by_key(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in result["rows"]}


def _ratio(rows: dict[str, dict[str, Any]], key: str, anchor: str | None) -> float | None:
    if anchor is None:
        return None
    a, b = rows.get(key, {}), rows.get(anchor, {})
    if "min" not in a or "min" not in b:
        return None
    return float(a["min"]) / float(b["min"])


def _fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def micro_markdown(results: dict[str, dict[str, Any]]) -> str:
    """The per-call table for every wrapt mode measured, then the targets."""
    modes = list(results)
    by_mode = {mode: _by_key(results[mode]) for mode in modes}
    header = ["way of calling `obj.m(x)`", "baseline"]
    for mode in modes:
        header += [f"{mode}: ns/call min (median)", f"{mode}: x raw", f"{mode}: x baseline"]
    rows = []
    skipped = []
    for row in results[modes[0]]["rows"]:
        key = row["key"]
        cells = [row["label"], row["baseline"] or ""]
        for mode in modes:
            this = by_mode[mode].get(key, {})
            if "min" in this:
                cells += [
                    f"{this['min']:.0f} ({this['median']:.0f})",
                    _fmt_ratio(_ratio(by_mode[mode], key, cases.RAW)),
                    _fmt_ratio(_ratio(by_mode[mode], key, row["baseline"])),
                ]
            else:
                cells += ["n/a", "—", "—"]
                skipped.append(f"- {row['label']} ({mode}): skipped, {this.get('skipped')}")
        rows.append(cells)
    first = results[modes[0]]
    parts = [
        "### Per-call cost (one thread)",
        "",
        f"{first['number']:,} calls per sample, {first['repeats']} interleaved rounds; "
        "ratios use the min of the rounds. `baseline` is the hand-written row with the "
        "same guarantees (fork check included).",
        "",
        table(header, rows),
    ]
    if skipped:
        parts += ["", *sorted(set(skipped))]
    target_rows = []
    for mode in modes:
        for target in MICRO_TARGETS + SAME_TRICK_TARGETS:
            ratio = _ratio(by_mode[mode], target.row, target.anchor)
            result = "n/a" if ratio is None else verdict(ratio <= target.limit)
            binding = "target" if mode == "C" else "reported"
            if target in SAME_TRICK_TARGETS:
                binding = "same fork check, info"
            target_rows.append(
                [
                    f"`{target.row}` / `{target.anchor}`",
                    mode,
                    binding,
                    _fmt_ratio(ratio),
                    f"≤ {target.limit}",
                    result,
                ]
            )
    parts += [
        "",
        "### Per-call targets",
        "",
        table(["ratio", "wrapt", "kind", "measured", "limit", "result"], target_rows),
    ]
    return "\n".join(parts)


def spread(values: Sequence[float]) -> str:
    """ "median (q1-q3)" of a few ratios, or the one value."""
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "—"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):.2f} ({q1:.2f}-{q3:.2f})"


def contended_markdown(result: dict[str, Any]) -> str:
    threads = result["threads"]
    rows = []
    for row in result["rows"]:
        if "skipped" in row:
            rows.append([row["label"], "—", "n/a", "n/a", "—", "—", f"skipped: {row['skipped']}"])
            continue
        ratio_min = row["many_min"] / row["single_min"]
        ratio = statistics.median(row["ratios"])
        target = verdict(ratio < CONTENDED_LIMIT) if row["key"] in PROJECT_ROWS else ""
        rows.append(
            [
                row["label"],
                f"{row['calls']:,}",
                f"{row['single_min']:.0f} ({row['single_median']:.0f})",
                f"{row['many_min']:.0f} ({row['many_median']:.0f})",
                f"{ratio_min:.2f}",
                spread(row["ratios"]),
                target,
            ]
        )
    header = [
        "way of calling `obj.m(x)`",
        "calls per thread",
        "1 thread: ns/call min (median)",
        f"{threads} threads: ns/call min (median)",
        "ratio of the mins",
        "ratio per round: median (quartiles)",
        f"target: median ratio < {CONTENDED_LIMIT:g}",
    ]
    return "\n".join(
        [
            f"### Contended: {threads} threads calling at once",
            "",
            f"Each thread makes the same number of calls, about {result['thread_ms']:g} ms of work "
            f"(switch interval {result['switch_interval'] * 1000:g} ms); ns/call is wall time / "
            f"all calls, wrapt C mode. Each of the {result['repeats']} interleaved rounds times 1 "
            f"thread then {threads} threads back to back; the target uses the median of those "
            f"per-round ratios. Pools have {cases.POOL_SIZE} slots, so {threads} threads wait for "
            f"them, except the two size-{cases.CONTENDED_THREADS} rows at the end (a slot per "
            "thread). Locks suffer most: a thread preempted while holding the lock makes every "
            "other thread sleep on it, and each release then wakes a sleeper through the OS.",
            "",
            table(header, rows),
        ]
    )


def memory_verdict(run: dict[str, Any]) -> bool:
    stats = run.get("stats_after_small") or {}
    return bool(
        run["alive_after_small"] == 0
        and stats.get("live", 0) == 0
        and run["gc_objects_after_small"] - run["gc_objects_after_one"] < GC_GROWTH_LIMIT
        and run["rss_large"] - run["rss_small"] < RSS_GROWTH_LIMIT
    )


def memory_markdown(runs: dict[str, dict[str, Any]]) -> str:
    rows = []
    for mode, run in runs.items():
        if "error" in run:
            rows.append([mode, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", run["error"]])
            continue
        stats = run.get("stats_after_small") or {}
        stats_text = ", ".join(
            f"{k}={stats[k]}" for k in ("created", "closed", "live") if k in stats
        )
        large = f"{run['large']:,}" + (
            ""
            if run["large"] == run["large_asked"]
            else f" (of {run['large_asked']:,}: time limit)"
        )
        rows.append(
            [
                mode,
                f"{run['small']:,}",
                str(run["alive_after_small"]),
                stats_text or "—",
                f"{run['gc_objects_after_small'] - run['gc_objects_after_one']:+d}",
                f"{run['rss_small'] / MIB:.1f}",
                f"{large}: {run['rss_large'] / MIB:.1f}",
                f"{(run['rss_large'] - run['rss_small']) / MIB:+.2f} MiB "
                f"{verdict(memory_verdict(run))}",
            ]
        )
    header = [
        "wrapt",
        "threads exited",
        "instances alive",
        "stats()",
        "gc objects vs 1 thread",
        "RSS MiB after them",
        "threads: RSS MiB",
        "RSS growth (limit 5 MiB)",
    ]
    return "\n".join(
        [
            "### Memory: a `per_thread` proxy after its threads exit",
            "",
            "Each thread calls the proxy once and exits (batches of 50). PASS needs no instance "
            f"alive, `stats().live == 0`, fewer than {GC_GROWTH_LIMIT} extra gc objects and RSS "
            "growth under 5 MiB.",
            "",
            table(header, rows),
        ]
    )


_SECTION = "<!-- section:{name} -->\n{body}\n<!-- /section:{name} -->"


def update_document(path: Path, sections: dict[str, str], order: Sequence[str], title: str) -> None:
    """Replace the named sections of ``path``, keep the others, in ``order``."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    kept = {
        match.group(1): match.group(2)
        for match in re.finditer(
            r"<!-- section:(\w+) -->\n(.*?)\n<!-- /section:\1 -->", old, flags=re.S
        )
    }
    kept.update(sections)
    body = [_SECTION.format(name=name, body=kept[name]) for name in order if name in kept]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(title + "\n\n" + "\n\n".join(body) + "\n", encoding="utf-8")
