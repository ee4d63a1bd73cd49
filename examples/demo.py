"""The main demo: the Gearman trap reproduced under our server, and each fix proven.

    scripts/demo.sh            (bootstrap, then: python -m examples.demo)

Starts a real gearmand and 2 reverse workers on free loopback ports, then for each variant of
``examples/gearman/app_<variant>.py`` serves it on our server (2 workers x 8 threads), drives it
with :func:`examples.load.run_load` (2,000 checked requests at concurrency 32) and prints a row:
ok, wrong results, HTTP 5xx, connection errors, timeouts, requests/s, and the Gearman client
connections the app holds open at gearmand afterwards (how many client instances it built).

``handwritten_local_warmed`` is the hand-written ``threading.local`` fix with a warm-up call at
import: it fails because each worker's main thread serves requests (as under uWSGI) with the
master's client; ``import_connect_per_thread`` is safeclients on the same import-touched shape.

Everything it starts is stopped by PID on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from examples.load import LoadResult, run_load
from examples.support.gearmand import start_gearmand, start_workers
from server.testing import ServerProcess

VARIANTS = (
    "unsafe",
    "per_thread",
    "locked",
    "pooled",
    "handwritten_local",
    "handwritten_lock",
    "handwritten_local_warmed",
    "import_connect_per_thread",
)
SAFECLIENTS = {"per_thread", "locked", "pooled", "import_connect_per_thread"}
# Expected to fail: the shared global, and the hand-written threading.local whose client was
# touched at import (a worker's main thread serves requests with the master's client).
TRAPS = {"unsafe", "handwritten_local_warmed"}
HEADER = (
    f"{'variant':<26} {'ok':>6} {'wrong':>6} {'5xx':>6} {'conn err':>8} {'timeouts':>8} "
    f"{'req/s':>7} {'clients':>7}"
)


def row(variant: str, result: LoadResult, clients: int) -> str:
    return (
        f"{variant:<26} {result.ok:>6} {result.wrong:>6} {result.http_5xx:>6} "
        f"{result.conn_errors:>8} {result.timeouts:>8} {result.rps:>7.0f} {clients:>7}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", "-n", type=int, default=2000)
    parser.add_argument("--concurrency", "-c", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)}",
    )
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")

    rows: list[str] = []
    verdict = 0
    print(
        f"gearman demo: {args.requests} requests at concurrency {args.concurrency} against "
        f"our server ({args.workers} workers x {args.threads} threads) per variant",
        file=sys.stderr,
    )
    try:
        with start_gearmand() as gearmand, start_workers(gearmand, 2):
            env = {"GEARMAN_SERVERS": gearmand.address, "GEARMAN_JOB_TIMEOUT": "5"}
            for variant in variants:
                print(f"-- {variant}", file=sys.stderr)
                with ServerProcess(
                    f"examples.gearman.app_{variant}:application",
                    workers=args.workers,
                    threads=args.threads,
                    env=env,
                ) as srv:
                    result = run_load(
                        srv.url,
                        total=args.requests,
                        concurrency=args.concurrency,
                        timeout=8.0,
                        progress=True,
                    )
                    clients = gearmand.client_connection_count()
                rows.append(row(variant, result, clients))
                if variant in TRAPS and result.failures == 0:
                    verdict = 1
                    rows.append("   ^ the trap did not show this time: rerun with more load")
                if variant not in TRAPS and result.failures:
                    verdict = 1
                    rows.extend(f"   e.g. {e}" for e in result.examples[:3])
    except KeyboardInterrupt:
        print("\ninterrupted: everything started was stopped", file=sys.stderr)
        return 130
    finally:
        if rows:
            print()
            print(HEADER)
            print("\n".join(rows))
            print(
                "(clients: Gearman client connections the app held open at gearmand after the "
                "run; safeclients variants: per_thread, locked, pooled, import_connect_per_thread;"
                " handwritten_local_warmed and import_connect_per_thread touch their client at "
                "import, in the master)"
            )
    return verdict


if __name__ == "__main__":
    sys.exit(main())
