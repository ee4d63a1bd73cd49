"""Core 0 runs on the worker's main thread (uWSGI's ``uwsgi_loop_cores_run()``), and the worker
still stops, recycles and drains while its main thread serves; idle kept-alive connections do not
hold a core. Each test runs its own server in a child process, stopped by PID."""

from __future__ import annotations

import concurrent.futures
import json
import signal

import pytest

from server.testing import ServerProcess
from tests.server.client import Client, get

pytestmark = pytest.mark.integration


def thread_of(srv: ServerProcess) -> dict[str, object]:
    response = get(srv.host, srv.port, "/thread")
    assert response.status == 200, response
    info: dict[str, object] = json.loads(response.body)
    return info


def test_one_core_is_the_main_thread() -> None:
    """--threads 1: the only core is core 0, the main thread; every request runs there."""
    with ServerProcess("tests.server.apps:router", workers=1, threads=1) as srv:
        seen = [thread_of(srv) for _ in range(5)]
    assert all(info["main"] is True for info in seen), seen


def test_main_thread_and_other_cores_share_requests() -> None:
    """--threads 4: within a bounded run, requests land on the main thread and on other cores."""
    with ServerProcess("tests.server.apps:router", workers=1, threads=4) as srv:
        names: set[object] = set()
        main_seen = False
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for _ in range(20):  # rounds of 8 concurrent requests; stop as soon as both are seen
                for info in pool.map(lambda _: thread_of(srv), range(8)):
                    names.add(info["name"])
                    main_seen = main_seen or info["main"] is True
                if main_seen and len(names) > 1:
                    break
    assert main_seen, f"no request ran on the main thread in 160 requests; threads seen: {names}"
    assert len(names) > 1, f"only {names} served 160 concurrent requests"


def test_requests_one_at_a_time_take_turns_on_every_core() -> None:
    """One request at a time (a light load), default --protocol-cores: the core that polled
    hands the next poll to the core idle longest (server/relay.py), so every core serves
    some, the main thread included, as uWSGI's cores do each waiting in accept()."""
    with ServerProcess("tests.server.apps:router", workers=1, threads=4) as srv:
        seen = [thread_of(srv) for _ in range(12)]
    names = {info["name"] for info in seen}
    assert any(info["main"] is True for info in seen), seen
    assert len(names) == 4, f"12 requests one at a time served by {names} only"


def test_sigterm_while_the_main_thread_serves_drains_its_request() -> None:
    """The signal arrives while core 0 (the only core) is inside the application: the request
    completes with 200, the worker stops, the master exits 0."""
    srv = ServerProcess(
        "tests.server.apps:router", workers=1, threads=1, args=["--graceful-timeout", "20"]
    )
    with srv:
        mark = srv.log_position()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(get, srv.host, srv.port, "/slow?s=1", timeout=30)
            srv.wait_for_log(
                r"slow request started in pid \d+ \(main thread: True\)", after=mark, timeout=20
            )
            srv.signal(signal.SIGTERM)
            response = future.result(timeout=40)
        assert response.status == 200 and response.body == b"slept 1.0\n"
        assert srv.wait(30) == 0


def test_max_requests_recycles_a_worker_whose_only_core_is_the_main_thread() -> None:
    args = ["--max-requests", "3", "--max-requests-jitter", "0"]
    with ServerProcess("tests.server.apps:router", workers=1, threads=1, args=args) as srv:
        first = thread_of(srv)["pid"]
        mark = srv.log_position()
        for _ in range(2):
            thread_of(srv)
        srv.wait_for_log(r"served 3 requests; recycling", after=mark, timeout=15)
        srv.wait_for_log(r"worker 1 \(pid: \d+\) ready", after=mark, timeout=15)
        assert thread_of(srv)["pid"] != first


def test_idle_keep_alive_connections_do_not_hold_the_cores() -> None:
    """More idle kept-alive connections than cores: a new connection is still served, and each
    idle connection is still alive and answered when it speaks again."""
    with ServerProcess(
        "tests.server.apps:router", workers=1, threads=2, args=["--keepalive-timeout", "60"]
    ) as srv:
        idle = [Client(srv.host, srv.port, timeout=10) for _ in range(6)]
        try:
            for c in idle:
                c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                response = c.read_response()
                assert (
                    response is not None
                    and response.status == 200
                    and response.header("connection") is None
                )
            # six connections now idle, kept alive for 60 s, with two cores: a seventh is served
            # within the client's 10 s timeout only if no idle connection holds a core.
            assert get(srv.host, srv.port, "/hello").status == 200
            for c in idle:
                c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                response = c.read_response()
                assert response is not None and response.status == 200
        finally:
            for c in idle:
                c.close()


def test_a_connection_accepted_before_a_recycle_still_gets_its_answer() -> None:
    """A client that connected but had not sent its request when the worker began recycling
    (``--max-requests``) is still answered, by the old worker's main thread or a new worker."""
    args = ["--max-requests", "2", "--max-requests-jitter", "0"]
    with ServerProcess("tests.server.apps:router", workers=1, threads=1, args=args) as srv:
        assert get(srv.host, srv.port, "/hello").status == 200
        with Client(srv.host, srv.port, timeout=10) as early:
            mark = srv.log_position()
            assert get(srv.host, srv.port, "/hello").status == 200  # the 2nd: recycling starts
            srv.wait_for_log(r"served 2 requests; recycling", after=mark, timeout=15)
            early.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            response = early.read_response()
        assert response is not None and response.status == 200
        assert response.header("connection") == "close"
