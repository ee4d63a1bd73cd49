"""End to end: the Gearman example apps on our server and on uWSGI, under load.

One real gearmand and two Gearman worker processes serve everything. Variants
that are compared with each other form a group (``per_thread`` with the
hand-written ``threading.local`` app, ``locked`` with the hand-written lock app,
the pool sizes together). For each server and group, every variant of the group
is served at once (each on its own server, 2 workers x 8 threads), then driven
in short bursts, round-robin with a rotated start, by ``examples.load.run_load``
(which checks that every reply is the reversed payload). On this shared, noisy
machine, a burst of one variant and the next burst of its rival see the same
weather, so the ratio survives the noise that absolute requests/s do not.
Throughput is the median of a variant's bursts; failures are summed over them.

Connections: after its bursts, the TCP connections from each server's worker
processes to gearmand's port (psutil), i.e. how many clients the policy built.

The unsafe app is its own group, with one capped burst: it is here for its
failures (wrong replies and 5xx from a shared, corrupted client).

Which process runs what: this module runs in the benchmark process; gearmand,
the Gearman workers and each server are children, all stopped by PID when their
``with`` block ends.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks import report
from examples.gearman._app import POOL_SIZE_ENV

WORKERS = 2
THREADS = 8
GEARMAN_WORKERS = 2
WARMUP_REQUESTS = 50
POOL_SIZES = (1, 2, 4, 8)
E2E_LIMIT = 0.95
#: Seconds: the app's Gearman poll timeout, and the load driver's per-request timeout. Short,
#: so a variant that corrupts its client (unsafe) fails fast instead of stalling the run.
JOB_TIMEOUT = 3.0
REQUEST_TIMEOUT = 5.0
UNSAFE_REQUESTS = 300


@dataclass(frozen=True)
class Variant:
    """An app to serve; ``max_bursts`` caps its bursts (the unsafe app answers slowly)."""

    name: str
    app: str
    env: dict[str, str] = field(default_factory=dict)
    max_bursts: int | None = None
    burst: int | None = None  # requests per burst, if not the run's


def _app(name: str) -> str:
    return f"examples.gearman.app_{name}:application"


def groups() -> list[list[Variant]]:
    """Variants served and driven together; the targets compare within a group."""
    return [
        [Variant("unsafe", _app("unsafe"), max_bursts=1, burst=UNSAFE_REQUESTS)],
        [
            Variant("handwritten_local", _app("handwritten_local")),
            Variant("per_thread", _app("per_thread")),
        ],
        [Variant("handwritten_lock", _app("handwritten_lock")), Variant("locked", _app("locked"))],
        [
            Variant(
                f"pooled size {size}",
                "examples.gearman.app_pooled:application",
                {POOL_SIZE_ENV: str(size)},
            )
            for size in POOL_SIZES
        ],
    ]


#: (variant, anchor): the variant's median requests/s must be >= E2E_LIMIT x the anchor's.
TARGETS = (("per_thread", "handwritten_local"), ("locked", "handwritten_lock"))


# -- servers ------------------------------------------------------------------------------

Launcher = Callable[[str, dict[str, str]], contextlib.AbstractContextManager[Any]]


def _ours(app: str, env: dict[str, str]) -> contextlib.AbstractContextManager[Any]:
    from server.testing import ServerProcess

    return ServerProcess(app, workers=WORKERS, threads=THREADS, env=env)


def _uwsgi(app: str, env: dict[str, str]) -> contextlib.AbstractContextManager[Any]:
    """Stock uWSGI (app imported in the master, no at-fork hooks in workers)."""
    from examples.support.servers import uwsgi_server

    return uwsgi_server(app, processes=WORKERS, threads=THREADS, env=env)


SERVERS: dict[str, Launcher] = {"ours": _ours, "uwsgi": _uwsgi}


# -- gearmand and its workers -------------------------------------------------------------


@contextlib.contextmanager
def gearman_backend() -> Iterator[Any]:
    """A gearmand and GEARMAN_WORKERS worker processes; all stopped by PID on exit."""
    from examples.support.gearmand import start_gearmand, start_workers

    with start_gearmand() as gearmand, start_workers(gearmand, GEARMAN_WORKERS):
        yield gearmand


def gearman_connections(srv: Any, port: int) -> int:
    """TCP connections from the server's worker processes to gearmand's ``port``."""
    import psutil  # type: ignore[import-untyped]

    count = 0
    for pid in srv.worker_pids():
        with contextlib.suppress(psutil.NoSuchProcess):  # a worker recycled meanwhile
            count += sum(
                1
                for conn in psutil.Process(pid).net_connections(kind="tcp")
                if conn.raddr and conn.raddr.port == port
            )
    return count


# -- measurement --------------------------------------------------------------------------


@dataclass
class Cell:
    """All bursts of one variant on one server."""

    rps: list[float] = field(default_factory=list)
    failures: int = 0
    requests: int = 0
    connections: int | None = None
    errors: list[str] = field(default_factory=list)


def _describe(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {' / '.join(lines[-2:])[:200]}"


def _run_group(
    server: str,
    group: Sequence[Variant],
    gearmand: Any,
    cells: dict[tuple[str, str], Cell],
    *,
    burst: int,
    bursts: int,
    concurrency: int,
) -> None:
    from examples.load import run_load

    with contextlib.ExitStack() as stack:
        running: dict[str, Any] = {}
        for variant in group:
            env = {
                "GEARMAN_SERVERS": gearmand.address,
                "GEARMAN_JOB_TIMEOUT": str(JOB_TIMEOUT),
                **variant.env,
            }
            try:
                srv = stack.enter_context(SERVERS[server](variant.app, env))
                run_load(
                    srv.url, total=WARMUP_REQUESTS, concurrency=concurrency, timeout=REQUEST_TIMEOUT
                )
            # A server that does not start costs its variant, not the table.
            except Exception as exc:  # noqa: BLE001
                cells[(server, variant.name)].errors.append(_describe(exc))
                continue
            running[variant.name] = srv
        active = [variant for variant in group if variant.name in running]
        for rep in range(bursts):
            shift = rep % max(len(active), 1)
            for variant in active[shift:] + active[:shift]:
                if variant.max_bursts is not None and rep >= variant.max_bursts:
                    continue
                cell = cells[(server, variant.name)]
                total = variant.burst or burst
                print(
                    f"   e2e {server} burst {rep + 1}/{bursts}: {variant.name}",
                    file=sys.stderr,
                    flush=True,
                )
                result = run_load(
                    running[variant.name].url,
                    total=total,
                    concurrency=concurrency,
                    timeout=REQUEST_TIMEOUT,
                )
                cell.rps.append(result.rps)
                cell.requests += total
                cell.failures += result.failures
        for variant in active:
            cells[(server, variant.name)].connections = gearman_connections(
                running[variant.name], gearmand.port
            )


def measure(
    *, burst: int, bursts: int, concurrency: int, servers: Sequence[str] = tuple(SERVERS)
) -> dict[str, Any]:
    """Every group on every server; a JSON-able dict of rows."""
    cells = {
        (server, variant.name): Cell()
        for server in servers
        for group in groups()
        for variant in group
    }
    with gearman_backend() as gearmand:
        for server in servers:
            for group in groups():
                _run_group(
                    server,
                    group,
                    gearmand,
                    cells,
                    burst=burst,
                    bursts=bursts,
                    concurrency=concurrency,
                )
    rows = []
    for (server, name), cell in cells.items():
        row: dict[str, Any] = {"server": server, "variant": name}
        if not cell.rps:
            row["skipped"] = cell.errors[-1] if cell.errors else "no sample"
        else:
            row.update(
                rps=statistics.median(cell.rps),
                rps_max=max(cell.rps),
                rps_bursts=cell.rps,
                failures=cell.failures,
                requests=cell.requests,
                connections=cell.connections,
                bursts=len(cell.rps),
            )
        rows.append(row)
    return {
        "workers": WORKERS,
        "threads": THREADS,
        "burst": burst,
        "bursts": bursts,
        "concurrency": concurrency,
        "rows": rows,
    }


def paired_ratios(variant: Sequence[float], anchor: Sequence[float]) -> list[float]:
    """variant / anchor per round, each pair from neighbouring bursts.

    Burst-to-burst noise here is +-30 %; neighbouring bursts share much of it, so the median
    of per-round ratios is steadier than a ratio of two medians. Its quartiles show how far
    the machine lets us see.
    """
    return [a / b for a, b in zip(variant, anchor, strict=True) if b > 0]


def markdown(result: dict[str, Any]) -> str:
    rows = {(row["server"], row["variant"]): row for row in result["rows"]}
    table_rows = []
    for row in result["rows"]:
        if "skipped" in row:
            table_rows.append(
                [
                    row["server"],
                    row["variant"],
                    "n/a",
                    "n/a",
                    "n/a",
                    "n/a",
                    f"skipped: {row['skipped']}",
                ]
            )
            continue
        table_rows.append(
            [
                row["server"],
                row["variant"],
                f"{row['rps']:.0f}",
                f"{row['rps_max']:.0f}",
                f"{row['failures']} / {row['requests']}",
                str(row["connections"]),
                f"{row['bursts']}",
            ]
        )
    target_rows = []
    for server in dict.fromkeys(row["server"] for row in result["rows"]):
        for name, anchor in TARGETS:
            a, b = rows.get((server, name), {}), rows.get((server, anchor), {})
            if "rps" in a and "rps" in b:
                ratios = paired_ratios(a["rps_bursts"], b["rps_bursts"])
                ratio = statistics.median(ratios)
                result_text = report.verdict(ratio >= E2E_LIMIT)
                if len(ratios) >= 2:
                    q1, _, q3 = statistics.quantiles(ratios, n=4)
                    if q1 <= E2E_LIMIT <= q3:
                        result_text += " (limit within the quartiles: noise)"
                target_rows.append(
                    [
                        server,
                        f"`{name}` / `{anchor}`",
                        report.spread(ratios),
                        f"≥ {E2E_LIMIT}",
                        result_text,
                    ]
                )
            else:
                target_rows.append([server, f"`{name}` / `{anchor}`", "—", f"≥ {E2E_LIMIT}", "n/a"])
    return "\n".join(
        [
            f"### End to end: Gearman app, {result['workers']} workers x {result['threads']} "
            "threads per server",
            "",
            f"Bursts of {result['burst']:,} checked requests at concurrency "
            f"{result['concurrency']}, {result['bursts']} per variant, round-robin between the "
            "variants of a group served side by side (hand-written local + `per_thread`; "
            "hand-written lock + `locked`; the pool sizes). requests/s is the median (and max) of "
            "the bursts; compare within a group. A throughput ratio is the median over rounds of "
            "the ratio of two neighbouring bursts. Failures are wrong replies, 5xx, connection "
            "errors and timeouts; connections are the TCP connections from the server's workers "
            f"to gearmand afterwards. The unsafe app gets one burst of {UNSAFE_REQUESTS} requests. "
            "uWSGI runs with `Connection: close` (its http-socket does not keep connections "
            "alive), so its figures are not comparable with our server's.",
            "",
            report.table(
                [
                    "server",
                    "app variant",
                    "requests/s (median)",
                    "max",
                    "failures",
                    "gearmand connections",
                    "bursts",
                ],
                table_rows,
            ),
            "",
            report.table(
                ["server", "throughput ratio", "median of rounds (quartiles)", "limit", "result"],
                target_rows,
            ),
            "",
            "![end-to-end throughput and failures](e2e.png)",
        ]
    )
