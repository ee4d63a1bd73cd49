"""The dispatcher (server/dispatch.py) against slow and numerous clients, on a real server.

Hundreds of slowloris, slow-body and slow-read connections, each test bounded in time: the
server's cores stay free for fresh requests, because only the dispatcher moves a slow client's
bytes. Then the connection cap (the oldest idle connection closed first) and an exhausted
open-file limit (accept() pauses, no busy loop, no log flood). Each test runs its own server in
a child process, stopped by PID; every socket it opens is closed in ``finally``. Last, the
dispatcher's bookkeeping in this process: a connection whose epoll registration is under way
(outside the lock) is never swept or evicted.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from server.connection import READ, READY, Connection
from server.dispatch import Dispatcher
from server.testing import ServerProcess
from tests.server.client import Client, get
from tests.server.test_connection import FakeWorker, no_content_app

pytestmark = pytest.mark.integration

SLOW = 300  # slow connections per test: far more than the server's cores (1 worker x 2)


@contextlib.contextmanager
def connections(srv: ServerProcess, count: int, rcvbuf: int = 0) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(10)
            sock.connect((srv.host, srv.port))
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def send_each(socks: list[socket.socket], data: bytes) -> None:
    for sock in socks:
        sock.sendall(data)


def fresh_requests_served(srv: ServerProcess, count: int = 10) -> list[int]:
    """Statuses of ``count`` fresh requests, each on a new connection with a 5 s timeout."""
    statuses = []
    for _ in range(count):
        try:
            statuses.append(get(srv.host, srv.port, "/hello", timeout=5).status)
        except (TimeoutError, ConnectionError):
            statuses.append(0)
    return statuses


def server(*args: str, threads: int = 2, env: dict[str, str] | None = None) -> ServerProcess:
    return ServerProcess(
        "tests.server.apps:router", workers=1, threads=threads, args=list(args), env=env
    )


@pytest.mark.parametrize(
    "start,trickle",
    [
        # a half-sent head (before: 8 such clients left fresh requests unanswered)
        (b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: ", b"a"),
        # a body one byte at a time (before: 16 such clients held every core)
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n", b"b"),
    ],
    ids=["slowloris", "slow-body"],
)
def test_slow_senders_do_not_hold_cores(start: bytes, trickle: bytes) -> None:
    """300 clients sending a head or a body a byte at a time, beside fresh requests: every
    fresh request is answered, round after round."""
    with server("--header-timeout", "30", "--socket-timeout", "30") as srv:
        with connections(srv, SLOW) as socks:
            send_each(socks, start)
            for _ in range(3):
                send_each(socks, trickle)
                statuses = fresh_requests_served(srv, 4)
                assert statuses == [200] * 4, f"fresh requests beside {SLOW} slow: {statuses}"


def test_slow_readers_do_not_hold_cores() -> None:
    """100 clients ask for 4 MB each and never read it (a 4 kB receive buffer; more than the
    kernel takes in on loopback, about 2.8 MB): the dispatcher continues those bodies as the
    clients read, the cores answer fresh requests; a slow reader still gets all of it."""
    body = 4_000_000
    with server("--socket-timeout", "30") as srv, connections(srv, 100, rcvbuf=4096) as socks:
        send_each(socks, b"GET /big?bytes=%d HTTP/1.1\r\nHost: t\r\n\r\n" % body)
        statuses = fresh_requests_served(srv, 10)
        assert statuses == [200] * 10, f"fresh requests beside 100 slow readers: {statuses}"
        with Client(srv.host, srv.port) as late:
            late.send(b"GET /big?bytes=%d HTTP/1.1\r\nHost: t\r\n\r\n" % body)
            response = late.read_response()
        assert response is not None and len(response.body) == body


def test_slow_reader_of_a_large_response_is_cut_off() -> None:
    """A 100 MB response read at 20 kB/s (progress every 0.2 s, which used to reset the stall
    timer for ever while a core waited): under --min-rate 1 MB/s and --socket-timeout 1 the
    server cuts it off within seconds, and the only core answers a fresh request meanwhile."""
    args = ("--socket-timeout", "1", "--min-rate", "1000000")
    with server(*args, threads=1) as srv, connections(srv, 1, rcvbuf=4096) as (slow,):
        slow.sendall(b"GET /big?bytes=100000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        received = 0
        ended = threading.Event()
        stop = threading.Event()

        def read_slowly() -> None:
            nonlocal received
            try:
                while not stop.is_set() and (data := slow.recv(4096)):
                    received += len(data)
                    stop.wait(0.2)  # the client's own pace, not synchronisation
                ended.set()
            except OSError:
                ended.set()  # reset by the server: cut off

        reader = threading.Thread(target=read_slowly, daemon=True)
        reader.start()
        try:
            assert get(srv.host, srv.port, "/hello", timeout=10).status == 200
            assert ended.wait(15), f"still sending after 15 s ({received} bytes read)"
            assert received < 100_000_000
        finally:
            stop.set()
            reader.join(5)


def test_connection_cap_closes_the_oldest_idle_first() -> None:
    """--max-connections 16: a 17th client is served, and the connection idle the longest is
    the one closed to make room; the next oldest is still usable."""
    # one core, so each response's idle clock starts before the next client's request is read
    with server("--max-connections", "16", "--keepalive-timeout", "30", threads=1) as srv:
        clients = [Client(srv.host, srv.port) for _ in range(16)]
        try:
            for client in clients:  # in order: clients[0] is idle the longest
                client.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                response = client.read_response()
                assert response is not None and response.status == 200
            assert get(srv.host, srv.port, "/hello", timeout=5).status == 200
            assert clients[0].closed_by_server(5), "the oldest idle connection was kept"
            clients[1].send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            response = clients[1].read_response()
            assert response is not None and response.status == 200
        finally:
            for client in clients:
                client.close()


def worker_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 10 ms


def test_open_file_limit_reached_pauses_accept_without_a_busy_loop() -> None:
    """An application holds every file descriptor the worker may open (EMFILE): a new client
    makes the oldest idle connection close, and once none is idle accept() pauses (one log
    line, little CPU) until descriptors are free again; then the waiting client is served."""
    env = {"SERVER_TEST_NOFILE": "200"}
    with server("--keepalive-timeout", "60", env=env) as srv:
        (worker_pid,) = srv.worker_pids()
        idle = Client(srv.host, srv.port)
        hog = Client(srv.host, srv.port)
        opened = [idle, hog]
        try:
            idle.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            assert idle.read_response() is not None
            hog.send(b"GET /hog?seconds=4 HTTP/1.1\r\nHost: t\r\n\r\n")
            held = hog.read_response()
            assert held is not None and held.status == 200, held
            mark = srv.log_position()
            # two idle connections: each of the next two clients closes one to get in, and
            # keeps its descriptor (a head still arriving is not idle)
            for old in (idle, hog):
                pending = Client(srv.host, srv.port)
                opened.append(pending)
                pending.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
                assert old.closed_by_server(5), "the oldest idle connection was not closed"
            # none idle now: this one waits for the application to release its files
            cpu_before = worker_cpu_seconds(worker_pid)
            started = time.monotonic()
            response = get(srv.host, srv.port, "/hello", timeout=15)
            waited = time.monotonic() - started
            cpu = worker_cpu_seconds(worker_pid) - cpu_before
            assert response.status == 200
            srv.wait_for_log(r"hog released \d+ files", after=mark, timeout=10)
            failures = [line for line in srv.log_text().splitlines()[mark:] if "accept()" in line]
            assert 1 <= len(failures) <= 2, f"accept() failures logged: {failures}"
            assert cpu < 0.5 * max(waited, 1.0), f"{cpu:.2f} s of CPU in {waited:.2f} s paused"
        finally:
            for client in opened:
                client.close()


def test_a_long_pipeline_is_answered_in_order_beside_another_client() -> None:
    """100 pipelined requests in one write, on one core: all answered, in order, while the
    core also answers another client (the pipeline is served 16 requests per turn)."""
    with server(threads=1) as srv:
        with Client(srv.host, srv.port) as c:
            c.send(b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(100)))
            assert get(srv.host, srv.port, "/hello", timeout=5).status == 200
            paths = []
            for _ in range(100):
                response = c.read_response()
                assert response is not None and response.status == 200
                paths.append(response.body.split(b'"PATH_INFO": "')[1].split(b'"')[0])
        assert paths == [b"/echo/%d" % i for i in range(100)]


def test_bodies_being_received_are_bounded_per_worker() -> None:
    """--max-body-buffer 250000: three clients each send 90 kB of a 100 kB body; the one whose
    bytes would pass the bound gets 503 (memory stays bounded however many send at once), the
    other two complete with 200, and the budget is free again afterwards."""
    args = ("--max-body", "100000", "--max-body-buffer", "250000")
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"
    with server(*args) as srv:
        for _ in range(2):  # twice: the first round's bytes were given back
            with connections(srv, 3) as socks:
                mark = srv.log_position()
                for sock in socks:
                    sock.sendall(head + b"x" * 90000)
                srv.wait_for_log(r"refused 503 .* request bodies being received", after=mark)
                statuses = []
                for sock in socks:
                    try:
                        sock.sendall(b"x" * 10000)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # refused: the server stopped reading it after its linger
                    client = Client.__new__(Client)  # read the response on this socket
                    client.sock, client.buffer = sock, b""
                    response = client.read_response()
                    statuses.append(response.status if response else None)
                assert sorted(statuses, key=str) == [200, 200, 503], statuses


# -- the dispatcher's own bookkeeping, in this process (no server child) ---------------------


class GatedEpoll:
    """The dispatcher's epoll set with ``register`` held until the test releases it: the
    window in which park() has put a connection in line but epoll does not watch it yet."""

    def __init__(self, epoll: select.epoll) -> None:
        self.epoll = epoll
        self.entered = threading.Event()
        self.release = threading.Event()

    def register(self, fd: int, events: int) -> None:
        self.entered.set()
        assert self.release.wait(10), "the test never released register()"
        self.epoll.register(fd, events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.epoll, name)


def test_a_connection_being_registered_is_neither_swept_nor_evicted() -> None:
    """park() calls epoll_ctl outside the dispatcher's lock (it releases the GIL); until it
    returns, a sweep past the connection's deadline and an eviction at the cap leave that
    connection alone (closing it there would let its fd be reused under the registration).
    Once registered, the same sweep closes it."""
    worker = FakeWorker(no_content_app)
    wake_r, wake_w = os.pipe()
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=5)
    dispatcher = Dispatcher(listener, wake_r, worker, max_connections=10)
    gated = GatedEpoll(dispatcher._epoll)
    parking: threading.Thread | None = None
    try:
        server_end, _ = listener.accept()
        conn = Connection(server_end, ("127.0.0.1", 1), worker, lambda c: None, dispatcher.budget)
        client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.on_readable(time.monotonic()) == READY
        assert conn.serve(0) == READ and conn.idle  # answered: idle, kept alive
        conn.deadline = 0.0  # its keep-alive deadline has passed
        dispatcher._epoll = gated  # type: ignore[assignment]
        parking = threading.Thread(target=dispatcher.park, args=(conn,))
        parking.start()
        assert gated.entered.wait(10), "park() never reached epoll_ctl"
        dispatcher._next_sweep = 0.0
        dispatcher.sweep()
        assert not dispatcher._evict_oldest_idle(), "evicted while epoll_ctl was under way"
        assert conn.sock.fileno() != -1, "closed while epoll_ctl was under way"
        gated.release.set()
        parking.join(10)
        assert not parking.is_alive()
        dispatcher._next_sweep = 0.0
        dispatcher.sweep()
        assert conn.sock.fileno() == -1, "an expired idle connection outlived the sweep"
    finally:
        gated.release.set()
        if parking is not None:
            parking.join(10)
        client.close()
        listener.close()
        dispatcher.close()
        os.close(wake_r)
        os.close(wake_w)


def test_the_listener_is_accepted_and_re_armed_before_a_permit() -> None:
    """wait() accepts a listener's event itself and re-arms the listener (a core then waits
    for a permit with a connection in hand, not with the listener): two connections come out
    of two wait() calls with no take() between them; take() then reads the first."""
    worker = FakeWorker(no_content_app)
    wake_r, wake_w = os.pipe()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    dispatcher = Dispatcher(listener, wake_r, worker, max_connections=10)
    clients = [socket.create_connection(listener.getsockname(), timeout=5) for _ in range(2)]
    accepted: list[Connection] = []
    try:
        for _ in range(2):
            work = dispatcher.wait(5)
            assert isinstance(work, Connection), f"wait() gave {work!r}, not a new connection"
            accepted.append(work)
        assert accepted[0] is not accepted[1]
        assert dispatcher.open_count() == 2
        clients[0].sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert select.select([accepted[0].sock], [], [], 5)[0], "the request never arrived"
        assert dispatcher.take(accepted[0]) is accepted[0]  # its request is whole: READY
    finally:
        for conn in accepted:
            conn.close()
        for client in clients:
            client.close()
        listener.close()
        dispatcher.close()
        os.close(wake_r)
        os.close(wake_w)
