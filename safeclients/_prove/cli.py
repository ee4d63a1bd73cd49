"""``python -m safeclients prove MODULE:APP [--path /x ...] [options]``.

Runs the app under the proving ground (:class:`~safeclients._prove.ground.ProvingGround`: the
app imported once in a master, its clients watched by reporting detectors, N workers forked, M
request threads each, core 0 on the worker's main thread), sends ``--requests`` GETs over the
``--path``\\ s at ``--concurrency``, stops everything, and reports each client used by two
threads at once or in two processes, and the response status counts.

Exit statuses: ``EXIT_CLEAN`` (0) nothing unsafe seen, ``EXIT_UNSAFE`` (1) unsafe use seen,
``EXIT_USAGE`` (2) a bad command line (argparse's own status), ``EXIT_NOT_RUN`` (3) the app
could not be run (its import raised or exited, the server did not start, its workers died);
a sentence on stderr says why. Interrupted by Ctrl-C: 130; by SIGTERM: 143 (the server stopped
first, as on every path).

Runs in the CLI's process, main thread; SIGTERM is turned into ``SystemExit`` while it runs, so
the server is stopped on that path too (as on Ctrl-C and on any exception).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

from safeclients._prove import load
from safeclients._prove.errors import ProveError, ProvingGroundNotStarted

EXIT_CLEAN = 0
EXIT_UNSAFE = 1
EXIT_USAGE = 2
EXIT_NOT_RUN = 3
EXIT_INTERRUPTED = 128 + signal.SIGINT  # Ctrl-C (SIGTERM: 128 + SIGTERM, through SystemExit)

# Lines of the server's log shown when the app could not be run.
LOG_TAIL = 30

# Seconds a request still running at the end gets before its worker is killed (the load has
# ended by then, unless the run was interrupted).
GRACEFUL = 5.0

# The run's bound in time, beyond the per-request timeout: no new request after this.
DEADLINE = 300.0


def add_arguments(prove: argparse.ArgumentParser) -> None:
    prove.add_argument("app", metavar="MODULE:APP", type=_app_spec, help="e.g. myapp.wsgi:app")
    prove.add_argument(
        "--path",
        dest="paths",
        action="append",
        type=_path,
        metavar="/PATH",
        help="a path to GET, with its query string (repeatable; default /)",
    )
    prove.add_argument("--workers", type=_positive, default=2, help="worker processes (2)")
    prove.add_argument("--threads", type=_positive, default=4, help="threads per worker (4)")
    prove.add_argument("--requests", type=_positive, default=200, help="requests in all (200)")
    prove.add_argument("--concurrency", type=_positive, default=16, help="requests at once (16)")
    prove.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="longest wait for one response (10)",
    )
    prove.add_argument(
        "--start-timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="longest wait for the app to import and the workers to be ready (60)",
    )
    prove.add_argument(
        "--package",
        dest="packages",
        action="append",
        default=[],
        metavar="NAME",
        help="also watch the clients of this package's modules (repeatable; the app's own "
        "top-level package always is)",
    )
    prove.add_argument(
        "--profiles",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, for the client profiles it registers (repeatable)",
    )
    prove.add_argument("--json", action="store_true", help="print the verdict as JSON")


def run(args: argparse.Namespace) -> int:
    paths: list[str] = args.paths or ["/"]
    try:
        from safeclients._prove.ground import ProvingGround
    except ModuleNotFoundError as exc:
        print(
            f"safeclients prove: could not run: {exc}; the proving ground needs the server "
            "extra: pip install 'safeclients[server]'",
            file=sys.stderr,
        )
        return EXIT_NOT_RUN
    ground = ProvingGround(
        args.app,
        workers=args.workers,
        threads=args.threads,
        packages=args.packages,
        profiles=args.profiles,
        start_timeout=args.start_timeout,
        stop_timeout=GRACEFUL + 5.0,
        server_args=["--graceful-timeout", f"{GRACEFUL:g}"],
    )
    with _sigterm_exits():
        try:
            ground.start()
            tally = load.send(
                ground.url,
                paths,
                requests=args.requests,
                concurrency=args.concurrency,
                timeout=args.timeout,
                deadline=DEADLINE,
            )
        except KeyboardInterrupt:
            print("safeclients prove: interrupted; stopping the server", file=sys.stderr)
            return EXIT_INTERRUPTED
        except ProvingGroundNotStarted as exc:
            tail = "".join(exc.log.splitlines(keepends=True)[-LOG_TAIL:])
            print(
                f"safeclients prove: could not run {exc}\n"
                f"--- the end of what the server and the app wrote ---\n{tail}",
                file=sys.stderr,
            )
            return EXIT_NOT_RUN
        finally:
            ground.stop()
    try:
        verdict = ground.verdict()
    except ProveError as exc:
        print(f"safeclients prove: could not run {args.app}: {exc}", file=sys.stderr)
        return EXIT_NOT_RUN
    statuses = dict(sorted(tally.items()))
    if args.json:
        report = {
            "app": args.app,
            "workers": args.workers,
            "threads": args.threads,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "paths": paths,
            "statuses": statuses,
            **verdict.to_dict(),
        }
        print(json.dumps(report, indent=2))
    else:
        watched = len(verdict.clients)
        print(
            f"safeclients prove of {args.app}: {args.workers} workers x {args.threads} threads, "
            f"{args.requests} requests at concurrency {args.concurrency} to {', '.join(paths)}"
        )
        print(
            f"watched {watched} client{'' if watched == 1 else 's'}"
            + (f": {', '.join(c.where for c in verdict.clients)}" if watched else "")
            + (f"; {verdict.proxies} already wrapped by safeclients" if verdict.proxies else "")
        )
        print(f"responses: {', '.join(f'{k}: {v}' for k, v in statuses.items())}")
        print(
            f"{len(verdict.unsafe)} unsafe use{'' if len(verdict.unsafe) == 1 else 's'} seen"
            + (":" if verdict.unsafe or verdict.notes else "")
        )
        text = verdict.render()
        if text:
            print(text)
    return EXIT_UNSAFE if verdict.unsafe else EXIT_CLEAN


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """While the run lasts, SIGTERM raises SystemExit in the main thread: finally blocks run."""

    def exit_now(signum: int, frame: types.FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _app_spec(text: str) -> str:
    module, colon, attr = text.partition(":")
    if not colon or not module or not attr:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not MODULE:APP (a dotted module name, a colon, the WSGI callable's "
            "name: myapp.wsgi:app)"
        )
    return text


def _path(text: str) -> str:
    if not text.startswith("/") or any(c in text for c in " \r\n\t"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a request path: it must start with / and hold no whitespace"
        )
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds > 0")
    return value
