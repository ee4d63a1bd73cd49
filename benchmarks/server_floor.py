"""The floor of a connection per request in Python: what accept + recv + send + close cost alone.

Not a test. Issue 23 asks for our connection-per-request throughput at 0.8x uWSGI's. This
measures how fast *any* pure-Python server can go at that on this machine: ``floor`` is a
server that does nothing but the four system calls per request (blocking ``accept()``, one
``recv()``, ``sendall()`` of a canned 200 response, ``close()``; no parsing, no application,
no threads), forked into the same number of workers, and it is run in the same interleaved
rounds as our server and uWSGI's ``--http-socket`` (its plain C loop, which also closes every
connection). If ``floor`` is below 0.8x uWSGI, no Python server can meet the target here.

    .venv/bin/python benchmarks/server_floor.py            # 2 workers, wrk -t2 -c32 -d5s, 3 rounds

The floor server itself runs in a child (``--serve``): the parent binds nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.server_bench import Launched, ours, uwsgi, wrk  # noqa: E402

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
    b"Connection: close\r\n\r\nHello, world!\n"
)


def serve(workers: int) -> None:
    """The floor server (child process): bind port 0, fork ``workers`` loops, wait."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    print(f"listening on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            loop(listener)
            os._exit(0)
        pids.append(pid)
    print(f"ready: {workers} workers", flush=True)

    def stop(signum: int, frame: object) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        for pid in pids:
            os.waitpid(pid, 0)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        signal.pause()


def loop(listener: socket.socket) -> None:
    """accept, recv, send, close: the least a connection per request costs (worker child)."""
    accept = listener._accept  # type: ignore[attr-defined]  # (fd, address): no socket object
    recv, send, close = os.read, os.write, os.close
    while True:
        fd, _ = accept()
        recv(fd, 65536)
        send(fd, RESPONSE)
        close(fd)


def floor_server(workers: int) -> Launched:
    return Launched(
        "floor",
        [sys.executable, __file__, "--serve", "--workers", str(workers)],
        r"listening on http://127\.0\.0\.1:(\d+)",
        r"ready: \d+ workers",
        1,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="ours and uWSGI")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.workers)
        return 0
    servers = [
        floor_server(args.workers),
        ours("ours", args.workers, args.threads),
        uwsgi("uwsgi-socket", args.workers, args.threads, "--http-socket"),
    ]
    rates: dict[str, list[float]] = {}
    try:
        for server in servers:
            server.wait_ready()
        for round_no in range(args.rounds):
            for server in servers:
                run = wrk(
                    server.url,
                    server.port,
                    keepalive=False,
                    threads=2,
                    connections=args.connections,
                    duration=args.duration,
                )
                rates.setdefault(server.name, []).append(run.rps)
                print(
                    f"round {round_no + 1} {server.name:12} {run.rps:9.0f} req/s  "
                    f"p99 {run.p99:7.2f} ms  errors {run.errors}",
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
    uwsgi_rps = statistics.median(rates["uwsgi-socket"])
    print(f"\nconnection per request, wrk -t2 -c{args.connections}, median of {args.rounds}")
    for name, runs in rates.items():
        rps = statistics.median(runs)
        print(f"{name:12} {rps:9.0f} req/s  {rps / uwsgi_rps:5.2f}x uwsgi-socket")
    return 0


if __name__ == "__main__":
    sys.exit(main())
