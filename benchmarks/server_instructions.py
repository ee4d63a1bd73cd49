"""Instructions per request in one worker of our server, counted by callgrind: the one
measure of the server's own cost that a shared, noisy machine does not blur.

Not a test. For each server package (this checkout's, and with ``--before DIR`` the one in
DIR, e.g. an export of main's ``server/``), it starts ``python -m server`` (1 worker x 8
threads) under ``valgrind --tool=callgrind``, sends a warm-up, then N requests one after
another (a new connection each with ``--mode close``, one kept-alive connection otherwise),
stops it by PID and reads the worker's instruction total. Two runs per server, of
``--requests`` and three times as many: their difference divided by the extra requests is the
cost of one request, with start-up and shutdown cancelled out.

    .venv/bin/python benchmarks/server_instructions.py --mode close
    git archive main server | tar -x -C /tmp/before
    .venv/bin/python benchmarks/server_instructions.py --mode keepalive --before /tmp/before

Takes about a minute per server (a request costs ~50x its time under callgrind).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.server_bench import REPO, ours  # noqa: E402

BODY = b"Hello, world!\n"


def send(port: int, count: int, close: bool) -> None:
    """``count`` GETs, one after another; each waits for its whole response."""
    header = b"Connection: close\r\n" if close else b""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n" + header + b"\r\n"
    if close:
        for _ in range(count):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(request)
                while sock.recv(65536):
                    pass
        return
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for _ in range(count):
            sock.sendall(request)
            received = b""
            while not received.endswith(BODY):
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed a kept-alive connection")
                received += data


def instructions(package_dir: Path, count: int, close: bool, out_dir: str) -> int:
    """The worker's instruction total for a warm-up and ``count`` requests."""
    out = os.path.join(out_dir, f"cg-{count}")
    runner = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p")
    server = ours(package_dir.name or "ours", 1, 8, package_dir, runner=runner)
    try:
        server.wait_ready(timeout=180)  # valgrind's start-up takes seconds
        send(server.port, 50, close)  # warm-up: imports, caches, the first connection
        send(server.port, count, close)
    finally:
        server.stop()
    totals = []
    for path in glob.glob(out + ".*"):
        text = Path(path).read_text()
        found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        totals.append(int(found.group(1)) if found else 0)
    if not totals:
        raise RuntimeError("callgrind wrote no profile")
    return max(totals)  # the worker's: the master only supervises


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("close", "keepalive"), default="close")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--before", type=Path, help="a directory holding an older server/")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    packages = {"ours": REPO}
    if args.before is not None:
        if not (args.before / "server" / "__main__.py").is_file():
            parser.error(f"--before {args.before}: no server/ package there")
        packages["before"] = args.before
    close = args.mode == "close"
    for name, package_dir in packages.items():
        with tempfile.TemporaryDirectory() as out_dir:
            small = instructions(package_dir, args.requests, close, out_dir)
            large = instructions(package_dir, 3 * args.requests, close, out_dir)
        per_request = (large - small) / (2 * args.requests)
        print(f"{name:8} {args.mode:9} {per_request:12,.0f} instructions per request", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
