"""Two job servers: Gearman's own way to scale out, with one of them killed under load.

    .venv/bin/python -m examples.gearman.two_servers [--requests 400] [--concurrency 16]

Starts two gearmands (A and B) on free loopback ports and 2 reverse workers registered at both,
then serves ``examples.gearman.app_pooled`` (``@safeclients.pooled(size=4)``) on our server,
2 workers x 8 threads, with ``GEARMAN_SERVERS=A,B``: pygearman picks a server per job at random
and moves on to the next one when a connect fails (``GearmanClient.establish_request_connection``).
Phases, each a checked load (:func:`examples.load.run_load`):

1. ``both up``: both servers in use;
2. ``A killed``: A is SIGKILLed while the load runs (jobs in flight on A fail; that is all);
3. ``A down``: every job must fail over to B;
4. ``A back``: A restarted on its port, the workers re-registered: the app connects to A again
   (A lists its client connections) and every request succeeds;
5. ``B killed``: B SIGKILLed in turn, so every job now has to go through A, the server that came
   back: proof that the clients use it again, not just that they connected.

Prints one row per phase: ok, wrong, errors, and the client connections at A and B afterwards.
Everything it starts is stopped by PID on the way out.
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import dataclass

from examples.load import LoadResult, run_load
from examples.support.gearmand import Gearmand, Workers, start_gearmand, start_workers
from server.testing import ServerProcess

APP = "examples.gearman.app_pooled:application"
LOAD_JOIN_TIMEOUT = 300.0


@dataclass(frozen=True)
class Phase:
    name: str
    result: LoadResult
    clients_a: int  # client connections gearmand A lists after the phase (-1: A is down)
    clients_b: int

    def row(self) -> str:
        r = self.result
        return (
            f"{self.name:<10} {r.ok:>5} {r.wrong:>6} {r.failures - r.wrong:>7} "
            f"{self.clients_a:>10} {self.clients_b:>10}"
        )


HEADER = f"{'phase':<10} {'ok':>5} {'wrong':>6} {'errors':>7} {'clients@A':>10} {'clients@B':>10}"


def _clients(server: Gearmand) -> int:
    return server.client_connection_count() if server.is_running() else -1


def run(
    a: Gearmand,
    b: Gearmand,
    workers: Workers,
    *,
    requests: int = 400,
    concurrency: int = 16,
    server_workers: int = 2,
    threads: int = 8,
) -> list[Phase]:
    """The five phases against running ``a``, ``b`` and ``workers``; restarts what it kills."""
    env = {"GEARMAN_SERVERS": f"{a.address},{b.address}", "GEARMAN_JOB_TIMEOUT": "5"}
    phases: list[Phase] = []

    def load() -> LoadResult:
        return run_load(srv.url, total=requests, concurrency=concurrency, timeout=10.0)

    def record(name: str, result: LoadResult) -> None:
        phases.append(Phase(name, result, _clients(a), _clients(b)))

    def load_while_killing(server: Gearmand) -> LoadResult:
        """A load in a thread; the kill happens once the load thread has started."""
        results: list[LoadResult] = []
        started = threading.Event()

        def target() -> None:
            started.set()
            results.append(load())

        thread = threading.Thread(target=target, name="two-servers-load", daemon=True)
        thread.start()
        started.wait(LOAD_JOIN_TIMEOUT)
        server.kill()
        thread.join(LOAD_JOIN_TIMEOUT)
        if not results:
            raise RuntimeError(f"the load did not finish within {LOAD_JOIN_TIMEOUT:.0f} s")
        return results[0]

    with ServerProcess(APP, workers=server_workers, threads=threads, env=env) as srv:
        record("both up", load())
        record("A killed", load_while_killing(a))
        record("A down", load())
        a.start()  # same port
        workers.ensure()
        record("A back", load())
        record("B killed", load_while_killing(b))
        b.start()
        workers.ensure()
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", "-n", type=int, default=400)
    parser.add_argument("--concurrency", "-c", type=int, default=16)
    args = parser.parse_args(argv)
    with start_gearmand() as a, start_gearmand() as b, start_workers(a, 2, also=[b]) as workers:
        phases = run(a, b, workers, requests=args.requests, concurrency=args.concurrency)
    print(HEADER)
    print("\n".join(p.row() for p in phases))
    print(
        f"(our server, 2 workers x 8 threads, app_pooled; {args.requests} requests per phase "
        f"at concurrency {args.concurrency}; clients@X: client connections gearmand X lists "
        f"after the phase, -1 while it is down)"
    )
    return 0 if all(p.result.wrong == 0 for p in phases) else 1


if __name__ == "__main__":
    sys.exit(main())
