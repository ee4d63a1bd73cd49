"""Throughput, tail latency and keep-alive fairness: our server vs gunicorn (gthread) vs uWSGI.

Not a test. One run starts every server (same app, same workers x threads, all on 127.0.0.1;
with ``--before DIR`` also the server package found in DIR, e.g. an export of main's
``server/``, as ``before``), then:

* **fairness**: opens 64 keep-alive connections to each server, sends one request on each (all
  at once), and counts the responses that arrive within 3 s and the slowest one; the connections
  stay open (idle, kept alive) until the end, as a browser's or a pool's would;
* **scenarios** (issue 23): ``hello-ka`` (hello world, keep-alive), ``hello-close`` (a new
  connection per request), ``heavy-ka`` (a page of Python work, ~20 kB of JSON, keep-alive),
  ``wait-ka`` (a 2 ms wait, as on a database, keep-alive),
  and ``hello-ka-fixed`` (hello keep-alive at the same offered load for every server, below
  the slowest one's capacity: see below); each driven by ``wrk --latency`` in interleaved
  rounds (ours, gunicorn, uwsgi, ours, ...); it prints the median requests/s with p50 and p99
  latency, and the ratios to gunicorn and uWSGI. The machine may be shared: look at the spread.

    .venv/bin/python benchmarks/server_bench.py              # 2 x 8, -t2 -c32 -d5s, 3 rounds
    git archive main server | tar -x -C /tmp/before           # main's server, as "before"
    .venv/bin/python benchmarks/server_bench.py --before /tmp/before

**Why three uWSGIs.** wrk reports only the requests that were answered: a connection that never
gets a response counts nowhere, not even as a timeout (wrk counts a timeout only when a late
response arrives). So the run also samples, with ``ss``, the listening socket's accept queue
while wrk runs; ``waiting`` is the smallest queue seen from 1 s into the run to its end:
connections wrk opened that waited the whole run without being accepted (keep-alive scenarios
only: a kept-alive connection, once accepted, never queues again; with a connection per request
the queue is an ordinary waiting line). The fairness table also says whether each server closes
a connection whose request says ``Connection: close``.

* ``uwsgi`` is ``--http11-socket``, the issue's measurement (kept visible): each core holds one
  kept-alive connection until the client closes it, so at ``-c32`` on 2 x 8 cores it serves
  16 connections and 16 wait the whole run (``waiting 16``, fairness 16/64); its req/s is that
  of 16 connections and its p99 leaves out the 16 that never got an answer. It also ignores the
  client's ``Connection: close`` (no RFC 9112 §9.6 close): its ``hello-close`` is keep-alive on
  16 connections, not a connection per request.
* ``uwsgi-http`` is what a user deploys to face clients directly: the ``--http`` router (one
  async C process in front of the workers) with ``--http-keepalive``. It answers every
  connection (64/64) and closes when asked: the like-for-like uWSGI in every scenario, and the
  one the "vs uwsgi" ratio uses. With ``--http-buffer-size 65536`` and ``--tcp-nodelay``: at
  the default 4 kB buffer the router sends the 20 kB page in pieces and stalls on delayed ACKs
  (heavy-ka: 700 req/s at p50 44 ms, against 3,200 at 7.7 ms with the larger buffer).
* ``uwsgi-socket`` is ``--http-socket`` (the plain C loop, as behind a proxy): it closes every
  connection after one response, so it runs only in the close scenario, where it is uWSGI's
  fastest honest connection-per-request figure ("vs sock"). It closes without saying
  ``Connection: close`` (so does the router in the close scenario), which wrk counts as a read
  error per request (the ``closed`` column, not an error of the response).

``ours-pc0`` is ours with ``--protocol-cores 0``: every core waits in epoll for an event of its
own, as the server did before 0.4 (server/relay.py); the pair shows what the relay buys in the
same run. ``wait-ka`` (a 2 ms wait in the application, as on a database, then hello world,
kept alive) checks that it costs nothing where the application, not the server, is the work.

**Pinned** (``--pin``, with ``--workers 1 --wrk-threads 1 --connections 16``): each server on
CPU 0 and wrk on CPU 1, so a worker has a CPU of its own and the load comes from elsewhere, as
in a deployment; without it every server's workers and wrk share the machine's CPUs, and the
tail measures the OS scheduler as much as the server.

**Fixed rate** (``hello-ka-fixed``): p99 at each server's own maximum throughput compares a
server at 6x gunicorn's load with gunicorn at its own; with the same offered load for all
(``--fixed-rate`` requests/s over the same connections, each pausing between its requests:
wrk's ``delay()``), p99 says how long a user waits at a load every server can carry.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from examples.support.processes import free_port  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
APP = "tests.server.apps:bench_raw"


@dataclasses.dataclass(frozen=True)
class Scenario:
    path: str
    keepalive: bool
    fixed_rate: bool = False  # the same offered load for every server (--fixed-rate)


SCENARIOS = {
    "hello-ka": Scenario("/", True),
    "hello-close": Scenario("/", False),
    "heavy-ka": Scenario("/heavy", True),
    "wait-ka": Scenario("/wait", True),
    "hello-ka-fixed": Scenario("/", True, fixed_rate=True),
}
CLOSE_ONLY = {"uwsgi-socket"}  # servers that close every connection: close scenarios only
RATIOS = {"gunicorn": "vs gunicorn", "uwsgi-http": "vs uwsgi", "uwsgi-socket": "vs sock"}
BIN = Path(sys.executable).parent
# wrk's Lua hook for hello-ka-fixed: each connection pauses WRK_DELAY_MS after a response.
DELAY_SCRIPT = 'local d = tonumber(os.getenv("WRK_DELAY_MS"))\nfunction delay() return d end\n'


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


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """``command`` run on CPU ``cpu`` only (``taskset``; its children inherit it), or as is."""
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


SERVER_CPU: int | None = None  # --pin: every server on CPU 0...
WRK_CPU: int | None = None  # ...and wrk on CPU 1


def ours(
    name: str,
    workers: int,
    threads: int,
    cwd: Path = REPO,
    extra: tuple[str, ...] = (),
    runner: tuple[str, ...] = (),
) -> Launched:
    """``python -m server`` from ``cwd`` (its ``server`` package), the app from this checkout;
    run by ``runner`` if given (``valgrind ...``: benchmarks/server_instructions.py)."""
    command = [*runner, sys.executable, "-m", "server", APP, "--bind", "127.0.0.1:0"]
    command += ["--workers", str(workers), "--threads", str(threads), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return Launched(
        name,
        pinned(command, SERVER_CPU),
        r"listening on http://127\.0\.0\.1:(\d+)",
        r"ready: \d+ workers",
        1,
        cwd=cwd,
        env=env,
    )


def uwsgi(name: str, workers: int, threads: int, mode: str) -> Launched:
    """uWSGI with ``mode``: ``--http11-socket``, ``--http-socket`` (each on port 0) or the
    ``--http`` router with keep-alive (on a free port: the router does not say which port 0
    gave it)."""
    if mode == "--http":
        port = free_port()
        bind = ["--http", f"127.0.0.1:{port}", "--http-keepalive", "--tcp-nodelay"]
        bind += ["--http-buffer-size", "65536"]  # 4 kB by default: 44 ms stalls on 20 kB pages
        port_re = rf"uWSGI http bound on 127\.0\.0\.1:({port})"
    else:
        bind = [mode, "127.0.0.1:0"]
        port_re = r"bound to TCP address 127\.0\.0\.1:(\d+)"
    command = [str(BIN / "uwsgi"), "--master", "--processes", str(workers)]
    command += ["--threads", str(threads), *bind, "--module", APP, "--pythonpath", "."]
    command += ["--disable-logging", "--listen", "100"]
    return Launched(name, pinned(command, SERVER_CPU), port_re, r"spawned uWSGI worker", workers)


def launch_all(workers: int, threads: int, before: Path | None, names: set[str]) -> list[Launched]:
    w, t = str(workers), str(threads)
    gunicorn = [str(BIN / "gunicorn"), "-k", "gthread", "--workers", w, "--threads", t]
    gunicorn += ["-b", "127.0.0.1:0", "--backlog", "1024", APP]
    launchers: dict[str, Callable[[], Launched]] = {
        "ours": lambda: ours("ours", workers, threads),
        "ours-pc0": lambda: ours("ours-pc0", workers, threads, extra=("--protocol-cores", "0")),
        "before": lambda: ours("before", workers, threads, before or REPO),
        "gunicorn": lambda: Launched(
            "gunicorn",
            pinned(gunicorn, SERVER_CPU),
            r"Listening at: http://127\.0\.0\.1:(\d+)",
            r"Booting worker",
            workers,
        ),
        "uwsgi": lambda: uwsgi("uwsgi", workers, threads, "--http11-socket"),
        "uwsgi-http": lambda: uwsgi("uwsgi-http", workers, threads, "--http"),
        "uwsgi-socket": lambda: uwsgi("uwsgi-socket", workers, threads, "--http-socket"),
    }
    return [launch() for name, launch in launchers.items() if name in names]


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


@dataclasses.dataclass
class Run:
    """One wrk run: requests/s, p50 and p99 in ms, errors (connect, write, timeout, non-2xx),
    read errors (``closed``: the server closed a connection wrk meant to reuse), and the
    connections that waited in the accept queue the whole run (``waiting``)."""

    rps: float
    p50: float
    p99: float
    errors: int
    closed: int
    waiting: int


def accept_queue(port: int) -> int:
    """Connections in the listening socket's accept queue on ``port`` now (``ss``'s Recv-Q)."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=5
    ).stdout.split()
    return int(out[1]) if len(out) > 1 else 0


def closes_when_asked(port: int, within: float = 2.0) -> bool:
    """True when the server closes the connection after answering a request that says
    ``Connection: close`` (RFC 9112 §9.6: it MUST)."""
    with socket.create_connection(("127.0.0.1", port), timeout=within) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        deadline = time.monotonic() + within
        try:
            while sock.recv(65536):
                if time.monotonic() > deadline:
                    return False
        except TimeoutError:
            return False
    return True


def wrk(
    url: str,
    port: int,
    *,
    keepalive: bool,
    threads: int,
    connections: int,
    duration: float,
    delay_ms: float = 0.0,
) -> Run:
    """One wrk run, with the accept queue of ``port`` sampled every 0.25 s from 1 s in."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    env = dict(os.environ)
    script = None
    if not keepalive:
        command += ["-H", "Connection: close"]
    if delay_ms:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(DELAY_SCRIPT)
        script.close()
        command += ["-s", script.name]
        env["WRK_DELAY_MS"] = f"{delay_ms:g}"
    command = pinned([*command, url], WRK_CPU)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        if done.wait(1.0):
            return
        while not done.wait(0.25):
            samples.append(accept_queue(port))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 60, env=env
        )
    finally:
        done.set()
        sampler.join()
        if script is not None:
            os.unlink(script.name)
    out = proc.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk failed on {url}: {proc.stdout}{proc.stderr}")

    def percentile(p: str) -> float:
        value, unit = re.search(p + r"%\s+([\d.]+)(us|ms|s)\b", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    def count(kind: str) -> int:
        found = re.search(kind + r" (\d+)", out)
        return int(found.group(1)) if found else 0

    errors = count("connect") + count("write") + count("timeout")
    errors += count("Non-2xx or 3xx responses:")
    return Run(
        float(found.group(1)),
        percentile("50"),
        percentile("99"),
        errors,
        count("read"),
        min(samples, default=0),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--connections", default="32", help="wrk concurrencies, comma-separated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument(
        "--servers",
        default="ours,ours-pc0,before,gunicorn,uwsgi,uwsgi-http,uwsgi-socket",
        help="comma-separated (before only with --before)",
    )
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fair-connections", type=int, default=64)
    parser.add_argument(
        "--fixed-rate",
        type=float,
        default=3000.0,
        help="requests/s offered to every server in hello-ka-fixed (all connections together)",
    )
    parser.add_argument("--before", type=Path, help="a directory holding an older server/")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="every server on CPU 0 and wrk on CPU 1 (taskset): a worker with a CPU of its "
        "own, the load from elsewhere; use with --workers 1 --wrk-threads 1 --connections 16",
    )
    args = parser.parse_args()
    if args.pin:
        if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
            parser.error("--pin needs taskset and 2 CPUs")
        global SERVER_CPU, WRK_CPU
        SERVER_CPU, WRK_CPU = 0, 1
    concurrencies = [int(c) for c in args.connections.split(",") if c]
    scenarios = [name for name in args.scenarios.split(",") if name]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    names = {name for name in args.servers.split(",") if name}
    if args.before is None:
        names.discard("before")
    elif not (args.before / "server" / "__main__.py").is_file():
        parser.error(f"--before {args.before}: no server/ package there")
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    servers = launch_all(args.workers, args.threads, args.before, names)
    results: dict[tuple[str, str, int], list[Run]] = {}
    fair: dict[str, tuple[int, float]] = {}
    closes: dict[str, bool] = {}
    try:
        for server in servers:
            server.wait_ready()
            wrk(server.url, server.port, keepalive=True, threads=1, connections=4, duration=1)
        for server in servers:
            fair[server.name] = fairness(server.port, args.fair_connections)
            closes[server.name] = closes_when_asked(server.port)
            print(
                f"fairness {server.name:12} {fair[server.name][0]}/{args.fair_connections} "
                f"within 3 s, slowest {fair[server.name][1]:.0f} ms; closes when asked: "
                f"{closes[server.name]}",
                flush=True,
            )
        for round_no in range(args.rounds):
            for connections in concurrencies:
                for scenario in scenarios:
                    sc = SCENARIOS[scenario]
                    delay = connections / args.fixed_rate * 1000 if sc.fixed_rate else 0.0
                    for server in servers:
                        if server.name in CLOSE_ONLY and sc.keepalive:
                            continue
                        run = wrk(
                            server.url.rstrip("/") + sc.path,
                            server.port,
                            keepalive=sc.keepalive,
                            threads=args.wrk_threads,
                            connections=connections,
                            duration=args.duration,
                            delay_ms=delay,
                        )
                        results.setdefault((server.name, scenario, connections), []).append(run)
                        print(
                            f"round {round_no + 1} {server.name:12} c{connections} {scenario:15}"
                            f"{run.rps:9.0f} req/s  p50 {run.p50:7.2f} ms  p99 {run.p99:7.2f} ms"
                            f"  errors {run.errors}  closed {run.closed}  waiting {run.waiting}",
                            flush=True,
                        )
    finally:
        for server in servers:
            server.stop()
    report(args, servers, fair, closes, results, concurrencies, scenarios)
    return 0


def report(
    args: argparse.Namespace,
    servers: list[Launched],
    fair: dict[str, tuple[int, float]],
    closes: dict[str, bool],
    results: dict[tuple[str, str, int], list[Run]],
    concurrencies: list[int],
    scenarios: list[str],
) -> None:
    """The summary: fairness, then the median of each scenario's rounds per server."""
    print(
        f"\n{args.workers} workers x {args.threads} threads; "
        f"fairness: {args.fair_connections} keep-alive connections, one request each, at once"
    )
    print(f"{'server':12} {'answered in 3 s':>15} {'slowest ms':>10} {'closes when asked':>17}")
    for server in servers:
        answered, slowest = fair[server.name]
        print(
            f"{server.name:12} {f'{answered}/{args.fair_connections}':>15} {slowest:10.0f} "
            f"{'yes' if closes[server.name] else 'NO':>17}"
        )
    print(
        f"\nwrk -t{args.wrk_threads} -d{args.duration:g}s --latency, median of {args.rounds} "
        f"interleaved rounds; hello-ka-fixed offers {args.fixed_rate:g} req/s; waiting "
        "(keep-alive): connections never accepted during the run (not in wrk's figures)"
    )
    refs = [name for name in RATIOS if name in fair]
    print(
        f"{'scenario':15} {'conns':>5} {'server':12} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        + "".join(f"{RATIOS[name]:>12}" for name in refs)
        + f" {'errors':>6} {'closed':>7} {'waiting':>7}"
    )
    for connections in concurrencies:
        for scenario in scenarios:
            medians = {
                name: (
                    statistics.median(r.rps for r in runs),
                    statistics.median(r.p50 for r in runs),
                    statistics.median(r.p99 for r in runs),
                )
                for (name, sc, conns), runs in results.items()
                if sc == scenario and conns == connections
            }
            for server in servers:
                if server.name not in medians:
                    continue
                runs = results[(server.name, scenario, connections)]
                rps, p50, p99 = medians[server.name]
                waiting = (
                    str(max(r.waiting for r in runs)) if SCENARIOS[scenario].keepalive else "-"
                )
                ratios = "".join(
                    f"{rps / medians[ref][0]:11.2f}x" if ref in medians else f"{'-':>12}"
                    for ref in refs
                )
                print(
                    f"{scenario:15} {connections:5} {server.name:12} {rps:8.0f} {p50:7.2f} "
                    f"{p99:7.2f} {ratios} {sum(r.errors for r in runs):6d} "
                    f"{sum(r.closed for r in runs):7d} {waiting:>7}"
                )


if __name__ == "__main__":
    sys.exit(main())
