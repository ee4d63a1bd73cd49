"""The async proof: each ASGI app under gunicorn's uvicorn worker, with and without --preload.

    .venv/bin/python -m examples.asgi.prove [--clients redis,asyncpg] [--forms per_loop,...]
        [--preload both|yes|no] [--before 1000] [--after 300]

For each client (:data:`CLIENTS`: redis.asyncio + Redis, asyncpg + PostgreSQL) x form (the
app's ``FORMS``: ``unwrapped``, then the documented ``per_loop`` and ``pooled`` forms) x
preload, ``gunicorn -k uvicorn.workers.UvicornWorker -w 2 [--preload]`` on 127.0.0.1 (port 0)
against the running backend (:mod:`examples.support.backends`):

1. ``before``: ``REQUESTS_BEFORE`` checked requests at concurrency ``CONCURRENCY`` (the
   threaded proof's driver, :func:`examples.realclients.load.run_checked_load`: each answer
   must echo its own request's token, so another request's answer counts as wrong);
2. the connections the backend holds (``held``), then every one killed server-side (Redis
   ``CLIENT KILL TYPE normal``, PostgreSQL ``pg_terminate_backend``; the launcher's own
   admin connection excluded), as a restart or a failover does (the launcher returns once the
   killed connections are gone);
3. ``after``: ``REQUESTS_AFTER`` more, where each instance held may fail once (it meets its
   dead connection) and must heal; with a check (``pooled_check``) none may fail;
4. gunicorn is stopped by PID (then its process group), and the backend must show 0
   connections: every worker's loop closed its instances inside it.

:func:`broken_promises` says, in sentences, what a case did not do that the form promises;
``tests/realclients/test_asgi.py`` asserts that list is empty (and that ``unwrapped`` fails).
The harness's parts are the threaded proof's (:mod:`examples.realclients.prove`): its load
driver, its connection counting, its backends. Runs in the calling process; gunicorn and its
workers are children in their own session.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from examples.asgi._asgi import FORM_ENV, POOL_SIZE, WARM_UP_ENV
from examples.realclients.load import Tally, run_checked_load
from examples.realclients.prove import (
    REQUEST_TIMEOUT,
    STOP_AFTER_FAILURES,
    settled_count,
    start_error_line,
    started_backends,
)
from examples.realclients.targets import Target
from examples.support.servers import ServerFailed, gunicorn_server

WORKERS = 2
CONCURRENCY = 32
REQUESTS_BEFORE = 1000
REQUESTS_AFTER = 300
#: The issue's command is the contract: uvicorn's own worker class (deprecated in favour of
#: the uvicorn-worker package since uvicorn 0.30, still shipped; its warning is allowed).
WORKER_CLASS = "uvicorn.workers.UvicornWorker"
POOL_MAX = 8  # per_loop_pool: asyncpg.create_pool(max_size=...) in each worker's loop
#: What the workers' log must never say: an async close or check that nobody awaited.
NEVER_AWAITED = "was never awaited"


@dataclass(frozen=True)
class Client:
    """One async client: its backend, its app module, its URL variable, its forms."""

    name: str
    backend: str
    app: str
    url_env: str
    forms: tuple[str, ...]
    #: The forms whose health check must leave 0 failures after the kill.
    checked: frozenset[str] = frozenset({"pooled_check"})


CLIENTS: dict[str, Client] = {
    "redis": Client(
        "redis",
        "redis",
        "examples.asgi.redis_app:application",
        "REDIS_URL",
        ("unwrapped", "per_loop", "per_loop_async", "pooled", "pooled_check"),
    ),
    "asyncpg": Client(
        "asyncpg",
        "postgresql",
        "examples.asgi.asyncpg_app:application",
        "DATABASE_URL",
        ("unwrapped", "per_loop_connect", "per_loop_pool", "pooled", "pooled_check"),
    ),
}


def promised_connections(client: str, form: str, workers: int = WORKERS) -> int | None:
    """The most backend connections a form may hold once the app is idle, or None where the
    client bounds nothing itself (redis.asyncio's own pool under ``per_loop`` opens one per
    concurrent command). The master's import-time warm-up holds none: its loop closed it."""
    if form in ("pooled", "pooled_check"):
        return workers * POOL_SIZE
    if form == "per_loop_connect":
        return workers
    if form == "per_loop_pool":
        return workers * POOL_MAX
    return None


@dataclass
class CaseResult:
    client: str
    form: str
    preload: bool
    warm_up: bool
    before: Tally
    held: int | None  # backend connections after ``before`` (the app idle)
    killed: int | None
    after: Tally
    after_stop: int | None
    seconds: float = 0.0
    start_error: str = ""  # gunicorn did not come up (the app failed to import)
    log_tail: str = ""
    never_awaited: list[str] = field(default_factory=list)  # the log's "never awaited" lines

    def row(self) -> str:
        held = "-" if self.held is None else str(self.held)
        most = promised_connections(self.client, self.form)
        left = "-" if self.after_stop is None else str(self.after_stop)
        case = (
            f"{self.client:<8} {self.form:<16} {'yes' if self.preload else 'no':<7} "
            f"{'yes' if self.warm_up else 'no':<7} "
        )
        if self.start_error:
            return f"{case}did not start: {self.start_error[:100]}"
        return (
            f"{case}"
            f"{self.before.ok:>5} {self.before.wrong:>6} {self.before.errors:>6} "
            f"{self.after.ok:>5} {self.after.wrong:>6} {self.after.errors:>6} "
            f"{held:>5}/{'-' if most is None else most:<3} {left:>5} {self.seconds:>5.1f}"
        )


HEADER = (
    f"{'client':<8} {'form':<16} {'preload':<7} {'warm-up':<7} "
    f"{'ok':>5} {'wrong':>6} {'errors':>6} {'ok':>5} {'wrong':>6} {'errors':>6} "
    f"{'conns':>9} {'left':>5} {'s':>5}\n"
    f"{'':<8} {'':<16} {'':<7} {'':<7} {'(before the kill)':>19} {'(after the kill)':>19} "
    f"{'held/max':>9}"
)


def broken_promises(result: CaseResult, checked: bool = False) -> list[str]:
    """Each way ``result`` falls short of the issue's contract, as a sentence with numbers;
    ``checked``: the form has a health check (0 failures after the kill)."""
    r, broken = result, []
    if r.start_error:
        return [f"gunicorn did not start: {r.start_error}"]
    if r.form == "unwrapped":
        if r.before.failures == 0 and r.after.failures == 0:
            broken.append(
                f"the unwrapped global answered all {r.before.sent + r.after.sent} requests "
                f"right (the trap did not show)"
            )
        return broken
    if r.before.wrong or r.after.wrong:
        broken.append(
            f"{r.before.wrong} + {r.after.wrong} wrong results (another request's answer) "
            f"before + after the kill"
        )
    if r.before.errors:
        broken.append(f"{r.before.errors} errors of {r.before.sent} before the kill")
    if r.before.sent < r.before.total or r.after.sent < r.after.total:
        broken.append(
            f"only {r.before.sent}/{r.before.total} and {r.after.sent}/{r.after.total} requests "
            f"were answered (the run stopped early)"
        )
    failed = r.after.failures
    if checked and failed:
        broken.append(
            f"{failed} failed requests of {r.after.sent} after the kill; with a check a dead "
            f"connection is replaced before reuse: 0"
        )
    elif r.held is not None and failed > r.held:
        broken.append(
            f"{failed} failed requests of {r.after.sent} after the kill, more than one per "
            f"connection held ({r.held})"
        )
    most = promised_connections(r.client, r.form)
    if r.held is not None and (r.held < WORKERS or (most is not None and r.held > most)):
        broken.append(
            f"{r.held} connections held at the backend; {r.form} promises between {WORKERS} "
            f"and {most if most is not None else 'any number'} ({WORKERS} workers)"
        )
    if r.after_stop:
        broken.append(f"{r.after_stop} connections remain at the backend after gunicorn stopped")
    if r.never_awaited:
        broken.append(
            f"the workers' log says {len(r.never_awaited)} times that a coroutine was never "
            f"awaited: {r.never_awaited[0].strip()[:160]}"
        )
    return broken


def run_case(
    client: Client,
    form: str,
    preload: bool,
    backend: Target,
    *,
    warm_up: bool = True,
    before: int = REQUESTS_BEFORE,
    after: int = REQUESTS_AFTER,
    env: Mapping[str, str] | None = None,
) -> CaseResult:
    """One client x form x preload (x import-time warm-up) run against a running ``backend``;
    see the module docstring."""
    started = time.monotonic()
    baseline = settled_count(backend)
    if baseline:
        raise RuntimeError(
            f"{backend.url} holds {baseline} connections before the case started; another "
            f"run is still connected"
        )
    app_env = {
        client.url_env: backend.url,
        FORM_ENV: form,
        WARM_UP_ENV: "1" if warm_up else "0",
        "SAFECLIENTS_EXAMPLE_POOL_MAX": str(POOL_MAX),
        **(env or {}),
    }

    def load(url: str, total: int) -> Tally:
        return run_checked_load(
            url,
            total=total,
            concurrency=CONCURRENCY,
            expect="token",
            timeout=REQUEST_TIMEOUT,
            stop_after=STOP_AFTER_FAILURES,
        )

    server = gunicorn_server(
        client.app, workers=WORKERS, preload=preload, env=app_env, worker_class=WORKER_CLASS
    )
    try:
        server.start()
    except ServerFailed as exc:
        text = str(exc)
        empty = Tally(0)
        return CaseResult(
            client.name,
            form,
            preload,
            warm_up,
            empty,
            None,
            None,
            empty,
            settled_count(backend),
            seconds=time.monotonic() - started,
            start_error=start_error_line(text).strip(),
            log_tail=text[-3000:],
        )
    try:
        first = load(server.url, before)
        held = backend.connection_count()
        killed = backend.kill_all_connections()  # returns once they are gone (PostgreSQL too)
        second = load(server.url, after)
    finally:
        server.stop()  # SIGTERM by PID, then SIGKILL of its group
    log = server.log_text()  # the whole of it: the workers' shutdown too
    left = settled_count(backend)
    if left:
        backend.kill_all_connections()  # leave the session's backend clean for the next case
    return CaseResult(
        client.name,
        form,
        preload,
        warm_up,
        first,
        held,
        killed,
        second,
        left,
        seconds=time.monotonic() - started,
        log_tail=log[-3000:],
        never_awaited=[line for line in log.splitlines() if NEVER_AWAITED in line],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--forms", default="", help="comma-separated; default: every form")
    parser.add_argument("--preload", choices=("both", "yes", "no"), default="both")
    parser.add_argument("--warm-up", choices=("both", "yes", "no"), default="yes")
    parser.add_argument("--before", type=int, default=REQUESTS_BEFORE)
    parser.add_argument("--after", type=int, default=REQUESTS_AFTER)
    args = parser.parse_args(argv)
    names = [c for c in args.clients.split(",") if c]
    unknown = [c for c in names if c not in CLIENTS]
    if unknown:
        parser.error(f"unknown clients {unknown}; expected some of {', '.join(CLIENTS)}")
    clients = [CLIENTS[c] for c in names]
    wanted = {f for f in args.forms.split(",") if f}
    known = {f for c in clients for f in c.forms}
    if wanted - known:
        parser.error(f"unknown forms {sorted(wanted - known)}; these clients have {sorted(known)}")
    choice = {"both": (False, True), "yes": (True,), "no": (False,)}
    preloads, warm_ups = choice[args.preload], choice[args.warm_up]
    rows: list[str] = []
    problems = 0
    with started_backends(sorted({c.backend for c in clients})) as backends:
        for client in clients:
            for form in client.forms:
                if wanted and form not in wanted:
                    continue
                for preload, warm_up in itertools.product(preloads, warm_ups):
                    if form == "unwrapped" and not warm_up:
                        continue  # the trap is the warm-up's (and asyncpg's connects anyway)
                    print(f"-- {client.name} {form} {preload=} {warm_up=}", file=sys.stderr)
                    result = run_case(
                        client,
                        form,
                        preload,
                        backends[client.backend],
                        warm_up=warm_up,
                        before=args.before,
                        after=args.after,
                    )
                    broken = broken_promises(result, form in client.checked)
                    problems += bool(broken)
                    rows.append(result.row() + ("" if not broken else "  <- " + "; ".join(broken)))
                    if broken:
                        print(
                            f"   examples: {result.before.examples + result.after.examples}\n"
                            f"   log: {result.log_tail[-1500:]}",
                            file=sys.stderr,
                        )
    print(HEADER)
    print("\n".join(rows))
    print(
        f"(gunicorn -k {WORKER_CLASS} -w {WORKERS}; {args.before} requests before the kill, "
        f"{args.after} after, concurrency {CONCURRENCY}; a run stops early after "
        f"{STOP_AFTER_FAILURES} failures; conns: backend connections held after the first "
        f"phase / the form's maximum; left: connections after gunicorn stopped)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
