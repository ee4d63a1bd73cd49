"""PNG charts of the last run (matplotlib, Agg backend: no display needed).

``micro_chart`` draws ns/call per row for each wrapt mode (log scale, since the
rows span three orders of magnitude); ``e2e_chart`` draws requests/s per app
variant and server with the failures beside it. Both take the JSON-able
results the sections return.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from benchmarks.report import PROJECT_ROWS  # noqa: E402

_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")


def micro_chart(results: dict[str, dict[str, Any]], path: Path) -> None:
    modes = list(results)
    labels = [row["label"] for row in results[modes[0]]["rows"]]
    keys = [row["key"] for row in results[modes[0]]["rows"]]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(keys) + 1.5))
    height = 0.8 / len(modes)
    for index, mode in enumerate(modes):
        by_key = {row["key"]: row for row in results[mode]["rows"]}
        values = [by_key.get(key, {}).get("min", 0.0) for key in keys]
        positions = [i + index * height for i in range(len(keys))]
        bars = ax.barh(
            positions,
            values,
            height=height,
            label=f"wrapt {mode}",
            color=_COLOURS[index % len(_COLOURS)],
        )
        ax.bar_label(
            bars, labels=[f"{v:.0f}" if v else "n/a" for v in values], fontsize=7, padding=2
        )
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(keys))])
    ax.set_yticklabels([label.replace("`", "") for label in labels], fontsize=8)
    for tick, key in zip(ax.get_yticklabels(), keys, strict=True):
        if key in PROJECT_ROWS:
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ns per call of obj.m(x) (min of interleaved rounds, log scale)")
    ax.set_title("Per-call cost, one thread (bold: safeclients)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def e2e_chart(result: dict[str, Any], path: Path) -> None:
    rows = [row for row in result["rows"] if "rps" in row]
    servers = sorted({row["server"] for row in rows})
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    fig, (ax_rps, ax_fail) = plt.subplots(
        1,
        2,
        figsize=(12, 0.5 * len(variants) + 2),
        sharey=True,
        gridspec_kw={"width_ratios": [3, 1]},
    )
    height = 0.8 / max(len(servers), 1)
    for index, server in enumerate(servers):
        by_variant = {row["variant"]: row for row in rows if row["server"] == server}
        positions = [i + index * height for i in range(len(variants))]
        colour = _COLOURS[index % len(_COLOURS)]
        cells = [by_variant.get(v, {}) for v in variants]
        bars = ax_rps.barh(
            positions, [c.get("rps", 0.0) for c in cells], height=height, label=server, color=colour
        )
        ax_rps.bar_label(
            bars,
            fontsize=7,
            padding=2,
            labels=[
                f"{c['rps']:.0f} req/s, {c['connections']} conn" if c else "n/a" for c in cells
            ],
        )
        bars = ax_fail.barh(
            positions,
            [c.get("failures", 0) for c in cells],
            height=height,
            label=server,
            color=colour,
        )
        ax_fail.bar_label(
            bars,
            fontsize=7,
            padding=2,
            labels=[f"{c['failures']}/{c['requests']}" if c else "" for c in cells],
        )
    ax_rps.set_yticks([i + 0.4 - height / 2 for i in range(len(variants))])
    ax_rps.set_yticklabels(variants, fontsize=9)
    ax_rps.invert_yaxis()
    ax_rps.set_xlabel("requests/s (median of bursts; conn = gearmand connections held)")
    ax_rps.set_title(
        f"Gearman app, {result['workers']} workers x {result['threads']} threads per server"
    )
    ax_rps.margins(x=0.25)
    ax_rps.legend(loc="upper right")
    ax_rps.grid(axis="x", alpha=0.3)
    ax_fail.set_xlabel("failed / sent requests")
    ax_fail.margins(x=0.3)
    ax_fail.set_title("Failures")
    ax_fail.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
