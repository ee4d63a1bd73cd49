"""Throughput, tail latency and keep-alive fairness: our server vs gunicorn (gthread) vs uWSGI.

Not a test. One run starts every server (same app, same workers x threads, all on 127.0.0.1
port 0; with ``--before DIR`` also the server package found in DIR, e.g. an export of main's
``server/``, as ``before``), then:

* **fairness**: opens 64 keep-alive connections to each server, sends one request on each (all
  at once), and counts the responses that arrive within 3 s and the slowest one; the connections
  stay open (idle, kept alive) until the end, as a browser's or a pool's would;
* **scenarios** (issue 23): ``hello-ka`` (hello world, keep-alive), ``hello-close`` (a new
  connection per request), ``heavy-ka`` (a page of Python work, ~20 kB of JSON, keep-alive);
  each driven by ``wrk --latency`` at each concurrency, in interleaved rounds (ours, gunicorn,
  uwsgi, ours, ...); it prints the median requests/s with p50 and p99 latency, and the ratios
  to gunicorn and uWSGI. The machine may be shared: look at the spread.

    .venv/bin/python benchmarks/server_bench.py              # 2 x 8, -t2 -c32 -d5s, 3 rounds
    git archive main server | tar -x -C /tmp/before           # main's server, as "before"
    .venv/bin/python benchmarks/server_bench.py --before /tmp/before

uWSGI runs with ``--http11-socket`` (its ``--http-socket`` with HTTP/1.1 keep-alive): plain
``--http-socket`` answers HTTP/1.0-style and closes every connection without saying so, which
wrk counts as read errors, so it has no keep-alive figure to compare.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = "tests.server.apps:bench_raw"
SCENARIOS = {  # name: (path, keep-alive)
    "hello-ka": ("/", True),
    "hello-close": ("/", False),
    "heavy-ka": ("/heavy", True),
}
BIN = Path(sys.executable).parent


class Launched:
    """A server child process whose output is drained by a thread; ready when a regex matched
    the expected number of times. Stopped by PID (TERM, then KILL)."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port_re: str,
        ready_re: str,
        ready_count: int,
        cwd: Path = REPO,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.port = 0
        self._port_re, self._ready_re, self._need = (
            re.compile(port_re),
            re.compile(ready_re),
            ready_count,
        )
        # Guards port and _seen; notified per line.
        self._changed = threading.Condition()
        self._seen = 0
        self._eof = False
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self._changed:
                self.lines.append(line)
                if not self.port and (m := self._port_re.search(line)):
                    self.port = int(m.group(1))
                if self._ready_re.search(line):
                    self._seen += 1
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_ready(self, timeout: float = 60.0) -> None:
        with self._changed:
            ok = self._changed.wait_for(
                lambda: (self.port and self._seen >= self._need) or self._eof, timeout
            )
            if not ok or self._eof:
                raise RuntimeError(f"{self.name} did not start:\n{''.join(self.lines[-30:])}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # no worker left behind: as it should be.

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def ours(name: str, workers: int, threads: int, cwd: Path = REPO) -> Launched:
    """``python -m server`` from ``cwd`` (its ``server`` package), the app from this checkout."""
    command = [sys.executable, "-m", "server", APP, "--bind", "127.0.0.1:0"]
    command += ["--workers", str(workers), "--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return Launched(
        name,
        command,
        r"listening on http://127\.0\.0\.1:(\d+)",
        r"ready: \d+ workers",
        1,
        cwd=cwd,
        env=env,
    )


def launch_all(workers: int, threads: int, before: Path | None) -> list[Launched]:
    w, t = str(workers), str(threads)
    return [
        ours("ours", workers, threads),
        *([ours("before", workers, threads, before)] if before is not None else []),
        Launched(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "-k",
                "gthread",
                "--workers",
                w,
                "--threads",
                t,
                "-b",
                "127.0.0.1:0",
                "--backlog",
                "1024",
                APP,
            ],
            r"Listening at: http://127\.0\.0\.1:(\d+)",
            r"Booting worker",
            workers,
        ),
        Launched(
            "uwsgi",
            [
                str(BIN / "uwsgi"),
                "--master",
                "--processes",
                w,
                "--threads",
                t,
                "--http11-socket",
                "127.0.0.1:0",
                "--module",
                APP,
                "--pythonpath",
                ".",
                "--disable-logging",
                "--listen",
                "100",
            ],
            r"bound to TCP address 127\.0\.0\.1:(\d+)",
            r"spawned uWSGI worker",
            workers,
        ),
    ]


def fairness(port: int, connections: int = 64, within: float = 3.0) -> tuple[int, float]:
    """(responses received within ``within`` s, slowest response in ms) for ``connections``
    kept-alive connections that each send one request at the same moment."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(connections)]
    selector = selectors.DefaultSelector()
    try:
        request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"  # keep-alive: HTTP/1.1 default
        buffers: dict[socket.socket, bytes] = {}
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            buffers[sock] = b""
        started = time.monotonic()
        for sock in socks:
            sock.send(request)
        done: dict[socket.socket, float] = {}
        deadline = started + within
        while len(done) < connections and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                fileobj = key.fileobj
                assert isinstance(fileobj, socket.socket)
                sock = fileobj
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                buffers[sock] += data
                head, sep, body = buffers[sock].partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if not data or (sep and length and len(body) >= int(length.group(1))):
                    selector.unregister(sock)
                    if data:
                        done[sock] = time.monotonic() - started
        return len(done), max(done.values(), default=0.0) * 1000
    finally:
        selector.close()
        for sock in socks:
            sock.close()


def wrk(
    url: str, *, keepalive: bool, threads: int, connections: int, duration: float
) -> tuple[float, float, float, int]:
    """(requests/s, p50 and p99 latency in ms, socket errors + non-2xx) of one wrk run."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
    if not keepalive:
        command[1:1] = ["-H", "Connection: close"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    out = proc.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk failed on {url}: {proc.stdout}{proc.stderr}")
    rps = float(found.group(1))

    def percentile(p: str) -> float:
        value, unit = re.search(p + r"%\s+([\d.]+)(us|ms|s)\b", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, percentile("50"), percentile("99"), errors + (int(non2xx.group(1)) if non2xx else 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--connections", default="32", help="wrk concurrencies, comma-separated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fair-connections", type=int, default=64)
    parser.add_argument("--before", type=Path, help="a directory holding an older server/")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.connections.split(",") if c]
    scenarios = [name for name in args.scenarios.split(",") if name]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    if args.before is not None and not (args.before / "server" / "__main__.py").is_file():
        parser.error(f"--before {args.before}: no server/ package there")
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    servers = launch_all(args.workers, args.threads, args.before)
    results: dict[tuple[str, str, int], list[tuple[float, float, float, int]]] = {}
    fair: dict[str, tuple[int, float]] = {}
    try:
        for server in servers:
            server.wait_ready()
            wrk(server.url, keepalive=True, threads=1, connections=4, duration=1)  # warm-up
        for server in servers:
            fair[server.name] = fairness(server.port, args.fair_connections)
            print(
                f"fairness {server.name:9} {fair[server.name][0]}/{args.fair_connections} "
                f"within 3 s, slowest {fair[server.name][1]:.0f} ms",
                flush=True,
            )
        for round_no in range(args.rounds):
            for connections in concurrencies:
                for scenario in scenarios:
                    path, keepalive = SCENARIOS[scenario]
                    for server in servers:
                        run = wrk(
                            server.url.rstrip("/") + path,
                            keepalive=keepalive,
                            threads=args.wrk_threads,
                            connections=connections,
                            duration=args.duration,
                        )
                        results.setdefault((server.name, scenario, connections), []).append(run)
                        print(
                            f"round {round_no + 1} {server.name:9} c{connections} {scenario:12}"
                            f"{run[0]:9.0f} req/s  p50 {run[1]:7.2f} ms  "
                            f"p99 {run[2]:7.2f} ms  errors {run[3]}",
                            flush=True,
                        )
    finally:
        for server in servers:
            server.stop()
    print(
        f"\n{args.workers} workers x {args.threads} threads; "
        f"fairness: {args.fair_connections} keep-alive connections, one request each, at once"
    )
    print(f"{'server':9} {'answered in 3 s':>15} {'slowest ms':>10}")
    for server in servers:
        answered, slowest = fair[server.name]
        print(f"{server.name:9} {f'{answered}/{args.fair_connections}':>15} {slowest:10.0f}")
    print(
        f"\nwrk -t{args.wrk_threads} -d{args.duration:g}s --latency, "
        f"median of {args.rounds} interleaved rounds"
    )
    print(
        f"{'scenario':12} {'conns':>5} {'server':9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'vs gunicorn':>11} {'vs uwsgi':>9} {'errors':>7}"
    )
    for connections in concurrencies:
        for scenario in scenarios:
            medians = {
                name: [statistics.median(r[i] for r in runs) for i in range(3)]
                for (name, sc, conns), runs in results.items()
                if sc == scenario and conns == connections
            }
            gunicorn, uwsgi = medians["gunicorn"][0], medians["uwsgi"][0]
            for server in servers:
                runs = results[(server.name, scenario, connections)]
                rps, p50, p99 = medians[server.name]
                print(
                    f"{scenario:12} {connections:5} {server.name:9} {rps:9.0f} "
                    f"{p50:8.2f} {p99:8.2f} "
                    f"{rps / gunicorn:10.2f}x {rps / uwsgi:8.2f}x {sum(r[3] for r in runs):7d}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
