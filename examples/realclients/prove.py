"""The proof harness: each real-client app under our server and real uWSGI, checked, then healed.

    .venv/bin/python -m examples.realclients.prove [--clients pymysql,redis] [--servers ours]

For each client (:data:`CLIENTS`: PyMySQL, mysqlclient, psycopg2, psycopg 3, pika, redis-py,
smtplib, ftplib, pymemcache, gRPC, paho-mqtt) x policy (unsafe, per_thread, locked, pooled,
pooled_check) x server (``ours``: ``server.testing``; ``uwsgi``: real uWSGI, default loading,
no at-fork hooks), with 2 workers x 8 threads, against a running target
(:mod:`examples.realclients.targets`):

1. ``before``: ``REQUESTS_BEFORE`` checked requests at concurrency ``CONCURRENCY``; what the
   backend acknowledged must reach it (a target that counts deliveries) before the cut;
2. the backend's view of the connections the app holds (``connection_count()``; None where
   the backend cannot count them), then ``kill_all_connections()``: killed server-side, as a
   database restart or failover does, or the server restarted on its port;
3. ``after`` and ``settled``: twice ``REQUESTS_AFTER`` requests, where each instance may fail
   once (it meets its dead connection) and must then heal: at most one failure per instance
   held (or that the policy may hold, where not counted), over both (an instance first used in
   the second batch fails there); with ``check=`` (``pooled_check``) none may fail;
4. the app server is stopped by PID, and the backend must show 0 connections (where counted);
   a target that counts deliveries must have seen every answered request's message once.

:func:`broken_promises` says, in sentences, what a case did not do that the policy promises;
``tests/realclients/test_proof.py`` asserts that list is empty. The backends are started here
(:func:`started_backends`) when run as a script; the tests use fixtures.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from examples.realclients._wsgi import POLICIES, POLICY_ENV, POOL_SIZE
from examples.realclients.load import Tally, run_checked_load
from examples.realclients.targets import Delivering, Target, started_target
from examples.support.backends import BACKENDS
from examples.support.servers import ServerFailed, gunicorn_server, uwsgi_server
from server.errors import ServerStartError
from server.testing import ServerProcess

WORKERS = 2
THREADS = 8
CONCURRENCY = 16
REQUESTS_BEFORE = 400
REQUESTS_AFTER = 100
STOP_AFTER_FAILURES = 16  # a failing run has shown what it shows; do not time out the rest
REQUEST_TIMEOUT = 3.0
SERVERS = ("ours", "uwsgi")  # the tested matrix; --servers may add gunicorn-preload
ALL_SERVERS = (*SERVERS, "gunicorn-preload")
DELIVERY_TIMEOUT = 10.0  # seconds for the last messages in flight to reach the backend
STOP_GRACE = 5.0  # seconds our server gets to finish requests before it is SIGKILLed
SETTLE_TIMEOUT = 20.0  # seconds for the backend to see the app server's sockets close


@dataclass(frozen=True)
class Client:
    """One real client: its backend, its app module, the URL variable, what its echo must be."""

    name: str
    backend: str
    app: str
    url_env: str
    expect: str  # "row" (databases) or "token"
    #: Whether the undecorated global must fail under load (the trap). False for gRPC: its
    #: channel made before the fork answered every call in the workers here (grpcio 1.85,
    #: whose fork support the profile's sources call unsupported for pre-fork channels).
    trap: bool = True
    #: Whether ``pooled_check`` must give 0 failures after the cut. False for gRPC: its check is
    #: the app's (``channel_ready_future``, the profile has none) and a channel that reconnects
    #: by itself can fall back into TRANSIENT_FAILURE after it: 4 of 200 calls failed once in
    #: five runs under uWSGI; the one-failure-per-instance bound applies instead.
    check_heals: bool = True


CLIENTS: dict[str, Client] = {
    c.name: c
    for c in (
        Client(
            "pymysql",
            "mariadb",
            "examples.realclients.mysql_app:application",
            "DATABASE_URL",
            "row",
        ),
        Client(
            "mysqlclient",
            "mariadb",
            "examples.realclients.mysqlclient_app:application",
            "DATABASE_URL",
            "row",
        ),
        Client(
            "psycopg",
            "postgresql",
            "examples.realclients.psycopg_app:application",
            "DATABASE_URL",
            "row",
        ),
        Client(
            "psycopg2",
            "postgresql",
            "examples.realclients.postgres_app:application",
            "DATABASE_URL",
            "row",
        ),
        Client(
            "pika", "rabbitmq", "examples.realclients.rabbitmq_app:application", "AMQP_URL", "token"
        ),
        Client(
            "redis", "redis", "examples.realclients.redis_app:application", "REDIS_URL", "token"
        ),
        Client("smtplib", "smtp", "examples.realclients.smtp_app:application", "SMTP_URL", "token"),
        Client("ftplib", "ftp", "examples.realclients.ftp_app:application", "FTP_URL", "token"),
        Client(
            "pymemcache",
            "memcached",
            "examples.realclients.memcache_app:application",
            "MEMCACHED_URL",
            "token",
        ),
        Client(
            "grpc",
            "grpc",
            "examples.realclients.grpc_app:application",
            "GRPC_URL",
            "token",
            trap=False,
            check_heals=False,
        ),
        Client(
            "paho-mqtt",
            "mosquitto",
            "examples.realclients.mqtt_app:application",
            "MQTT_URL",
            "token",
        ),
    )
}


def promised_connections(policy: str, workers: int = WORKERS, threads: int = THREADS) -> int:
    """The most backend connections a policy may hold: per worker, plus the master's one (the
    app touches its client at import, in the master, before the fork)."""
    per_worker = {
        "per_thread": threads,
        "locked": 1,
        "pooled": POOL_SIZE,
        "pooled_check": POOL_SIZE,
    }.get(policy, 1)
    return workers * per_worker + 1


POLICY_WIDTH = max(map(len, POLICIES))  # pooled_check, the longest, lines up too


@dataclass
class CaseResult:
    client: str
    policy: str
    server: str
    before: Tally
    held: int | None  # backend connections after ``before`` (the app idle); None: not counted
    killed: int | None
    after: Tally
    settled: Tally
    after_stop: int | None
    seconds: float = 0.0
    start_error: str = ""  # the app server did not come up (the app failed to import)
    log_tail: str = ""
    notes: list[str] = field(default_factory=list)
    #: With a target that counts deliveries (None otherwise): answered requests whose message
    #: did not arrive, and tokens that arrived more than once.
    undelivered: int | None = None
    duplicated: int | None = None

    def row(self) -> str:
        held = "-" if self.held is None else str(self.held)
        left = "-" if self.after_stop is None else str(self.after_stop)
        once = (
            "-"
            if self.undelivered is None or self.duplicated is None
            else f"{self.undelivered}/{self.duplicated}"
        )
        return (
            f"{self.client:<10} {self.policy:<{POLICY_WIDTH}} {self.server:<16} "
            f"{self.before.ok:>5} {self.before.wrong:>6} {self.before.errors:>6} "
            f"{self.after.failures:>7} {self.settled.failures:>8} "
            f"{held:>5}/{promised_connections(self.policy):<3} {left:>6} {once:>7} "
            f"{self.seconds:>5.1f}"
        )


HEADER = (
    f"{'client':<10} {'policy':<{POLICY_WIDTH}} {'server':<16} {'ok':>5} {'wrong':>6} "
    f"{'errors':>6} {'killed:':>7} {'settled:':>8} {'conns':>9} {'stop':>6} {'lost/':>7} "
    f"{'s':>5}\n"
    f"{'':<10} {'':<{POLICY_WIDTH}} {'':<16} {'(before the kill)':>19} {'fails':>7} "
    f"{'fails':>8} {'held/max':>9} {'left':>6} {'twice':>7}"
)


def broken_promises(
    result: CaseResult, workers: int = WORKERS, *, trap: bool = True, check_heals: bool = True
) -> list[str]:
    """Each way ``result`` falls short of the issue's contract, as a sentence with numbers;
    ``trap``: whether the unsafe global must fail (:attr:`Client.trap`); ``check_heals``:
    whether ``pooled_check`` must give 0 failures after the cut (:attr:`Client.check_heals`)."""
    r, broken = result, []
    if r.start_error:
        return [f"the app server did not start: {r.start_error}"]
    if r.policy == "unsafe":
        if trap and r.before.failures == 0:
            broken.append(
                f"the unsafe global gave no wrong result and no error in "
                f"{r.before.sent} requests (the trap did not show)"
            )
    else:
        if r.before.wrong:
            broken.append(f"{r.before.wrong} wrong results of {r.before.sent} before the kill")
        if r.before.errors:
            broken.append(f"{r.before.errors} errors of {r.before.sent} before the kill")
        healed = r.after.failures + r.settled.failures
        promise = promised_connections(r.policy, workers)
        # Not counted at the backend: an instance per request thread at most (the promise).
        instances, counted = (promise, "at most") if r.held is None else (r.held, "held")
        if r.policy == "pooled_check" and check_heals and healed:
            broken.append(
                f"{healed} failed requests of {r.after.sent + r.settled.sent} after the "
                f"kill; with check= a dead connection is replaced before reuse: 0"
            )
        elif healed > instances:
            broken.append(
                f"{healed} failed requests of {r.after.sent + r.settled.sent} after the "
                f"kill, more than one per instance ({instances} {counted}); "
                f"{r.settled.failures} of them among the last {r.settled.sent}"
                + (": no healing" if r.settled.failures * 2 >= r.settled.sent else "")
            )
        if r.held is not None and not workers <= r.held <= promise:
            broken.append(
                f"{r.held} connections held at the backend; {r.policy} promises "
                f"between {workers} and {promise} ({workers} workers, + the master's)"
            )
        if r.undelivered:
            broken.append(
                f"{r.undelivered} answered requests whose message never reached the backend"
            )
        if r.duplicated:
            broken.append(f"{r.duplicated} messages reached the backend more than once")
    if r.after_stop:
        broken.append(
            f"{r.after_stop} connections remain at the backend after the app server stopped"
        )
    return broken


def serve(kind: str, app: str, env: Mapping[str, str]) -> AbstractContextManager[Any]:
    if kind == "ours":
        return ServerProcess(app, workers=WORKERS, threads=THREADS, env=dict(env))
    if kind == "uwsgi":
        return uwsgi_server(app, processes=WORKERS, threads=THREADS, env=env)
    if kind == "gunicorn-preload":
        return gunicorn_server(app, workers=WORKERS, threads=THREADS, preload=True, env=env)
    raise ValueError(f"unknown server kind {kind!r}; expected one of {ALL_SERVERS}")


def start_error_line(log: str) -> str:
    """What a server that did not start says went wrong: the last line of its ``log`` that
    names an error (the app's import failed: ``FactoryError: ...``), else its first 200
    characters."""
    return next((line for line in reversed(log.splitlines()) if "Error" in line), log[:200])


def settled_count(backend: Target, timeout: float = SETTLE_TIMEOUT) -> int | None:
    """The backend's connection count once it reaches 0, or the last count after ``timeout``
    (closed sockets reach the server a moment later; an external state, polled with a bound);
    None for a backend that cannot count them."""
    deadline = time.monotonic() + timeout
    count = backend.connection_count()
    while count and time.monotonic() < deadline:
        time.sleep(0.2)
        count = backend.connection_count()
    return count


def delivery_counts(backend: Target, answered: list[str]) -> tuple[int | None, int | None]:
    """(answered requests whose token never arrived, tokens that arrived more than once), or
    (None, None) for a backend that does not count deliveries. Waits (bounded) for the last
    messages in flight: a broker forwards to its subscribers a moment after the publish."""
    if not isinstance(backend, Delivering):
        return None, None
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while True:
        seen = backend.deliveries()
        missing = sum(1 for token in answered if not seen[token])
        if not missing or time.monotonic() > deadline:
            return missing, sum(1 for count in seen.values() if count > 1)
        time.sleep(0.1)  # polling another process's (or thread's) deliveries, bounded


def run_case(
    client: Client,
    policy: str,
    server: str,
    backend: Target,
    *,
    before: int = REQUESTS_BEFORE,
    after: int = REQUESTS_AFTER,
) -> CaseResult:
    """One client x policy x server run against a running ``backend``; see the module doc."""
    started = time.monotonic()
    baseline = settled_count(backend)
    if baseline:
        raise RuntimeError(
            f"{backend.url} holds {baseline} connections before the case "
            f"started; another run is still connected"
        )
    env = {client.url_env: backend.url, POLICY_ENV: policy}

    def load(url: str, total: int) -> Tally:
        return run_checked_load(
            url,
            total=total,
            concurrency=CONCURRENCY,
            expect=client.expect,
            timeout=REQUEST_TIMEOUT,
            stop_after=STOP_AFTER_FAILURES,
        )

    with ExitStack() as stack:
        try:
            srv = stack.enter_context(serve(server, client.app, env))
        except (ServerStartError, ServerFailed) as exc:
            text = str(exc)
            last = start_error_line(text)
            empty = Tally(0)
            return CaseResult(
                client.name,
                policy,
                server,
                empty,
                0,
                0,
                empty,
                empty,
                settled_count(backend),
                seconds=time.monotonic() - started,
                start_error=last.strip(),
                log_tail=text[-3000:],
            )
        first = load(srv.url, before)
        # What the backend acknowledged reaches its end before the cut: a broker that is
        # restarted loses the messages it still forwards (Mosquitto here keeps no state), and
        # the proof is about the client's deliveries, not the broker's persistence.
        delivery_counts(backend, first.ok_tokens)
        held = backend.connection_count()
        killed = backend.kill_all_connections()
        second = load(srv.url, after)
        third = load(srv.url, after)
        log = srv.log_text()[-3000:]
        if isinstance(srv, ServerProcess):
            srv.stop(timeout=STOP_GRACE)  # request threads hung on a shared client never finish
    undelivered, duplicated = delivery_counts(
        backend, first.ok_tokens + second.ok_tokens + third.ok_tokens
    )
    left = settled_count(backend)
    if left:
        backend.kill_all_connections()  # leave the session's backend clean for the next case
    return CaseResult(
        client.name,
        policy,
        server,
        first,
        held,
        killed,
        second,
        third,
        left,
        seconds=time.monotonic() - started,
        log_tail=log,
        undelivered=undelivered,
        duplicated=duplicated,
    )


@contextmanager
def started_backends(names: list[str]) -> Iterator[dict[str, Target]]:
    """Each named backend started (:data:`BACKENDS`' launchers, or the restarted servers of
    :mod:`examples.realclients.targets`), stopped when the block ends."""
    with ExitStack() as stack:
        running: dict[str, Target] = {}
        for name in names:
            if name in BACKENDS:
                backend = BACKENDS[name]()
                stack.callback(backend.close)
                running[name] = backend.start()
            else:
                running[name] = stack.enter_context(started_target(name))
        yield running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated subset of {','.join(ALL_SERVERS)}",
    )
    parser.add_argument("--before", type=int, default=REQUESTS_BEFORE)
    parser.add_argument("--after", type=int, default=REQUESTS_AFTER)
    args = parser.parse_args(argv)
    clients = [CLIENTS[c] for c in args.clients.split(",") if c]
    policies = [p for p in args.policies.split(",") if p]
    servers = [s for s in args.servers.split(",") if s]
    rows: list[str] = []
    problems = 0
    with started_backends(sorted({c.backend for c in clients})) as backends:
        for client in clients:
            for policy in policies:
                for server in servers:
                    print(f"-- {client.name} {policy} {server}", file=sys.stderr)
                    result = run_case(
                        client,
                        policy,
                        server,
                        backends[client.backend],
                        before=args.before,
                        after=args.after,
                    )
                    broken = broken_promises(
                        result, trap=client.trap, check_heals=client.check_heals
                    )
                    problems += bool(broken)
                    rows.append(result.row() + ("" if not broken else "  <- " + "; ".join(broken)))
    print(HEADER)
    print("\n".join(rows))
    print(
        f"({WORKERS} workers x {THREADS} threads; {args.before} requests before the kill, "
        f"{args.after} + {args.after} after, concurrency {CONCURRENCY}; runs stop early after "
        f"{STOP_AFTER_FAILURES} failures; conns: backend connections held after the first "
        f"phase / the policy's maximum incl. the master's import-time one)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
