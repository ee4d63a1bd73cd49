"""The master's supervision, for real: respawn, graceful stop and reload, recycling, harakiri,
boot failures. Each test runs its own server in a child process, stopped by PID."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import threading
import time

import psutil  # type: ignore[import-untyped]
import pytest

from server import logs
from server.errors import ServerStartError
from server.master import EXIT_APP_LOAD, EXIT_BOOT_FAILED
from server.testing import ServerProcess
from tests.server.client import Client, get

pytestmark = pytest.mark.integration


def pid_of(srv: ServerProcess, retries: int = 0) -> int:
    response = get(srv.host, srv.port, "/pid", retries=retries)
    assert response.status == 200, response
    return int(response.body)


def test_sigkilled_worker_is_respawned_and_retrying_clients_lose_nothing() -> None:
    with ServerProcess("tests.server.apps:router", workers=2, threads=4) as srv:
        victim = srv.worker_pids()[0]
        total, killed = 400, threading.Event()
        mark = srv.log_position()

        def one(i: int) -> int:
            if i == total // 4:
                os.kill(victim, signal.SIGKILL)
                killed.set()
            return pid_of(srv, retries=5)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            pids = list(pool.map(one, range(total)))
        assert killed.is_set() and len(pids) == total, "every request got its answer"
        srv.wait_for_log(
            logs.WORKER_EXITED_RE.pattern.replace(r"(?P<pid>\d+)", str(victim)),
            after=mark,
            timeout=15,
        )
        srv.wait_for_log(logs.WORKER_READY_RE, after=mark, timeout=15)
        assert victim not in srv.worker_pids() and len(srv.worker_pids()) == 2
        assert f"pid: {victim}) killed by SIGKILL" in srv.log_text()
        assert pid_of(srv) != victim


def test_sigterm_drains_in_flight_requests() -> None:
    """Every request a worker took before SIGTERM completes with 200; then the master exits 0."""
    srv = ServerProcess(
        "tests.server.apps:router", workers=2, threads=4, args=["--graceful-timeout", "20"]
    )
    with srv:
        mark = srv.log_position()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [
                pool.submit(get, srv.host, srv.port, "/slow?s=2", timeout=30) for _ in range(6)
            ]
            srv.wait_for_lines("slow request started", 6, after=mark, timeout=20)
            srv.signal(signal.SIGTERM)
            responses = [f.result(timeout=40) for f in futures]
        assert [r.status for r in responses] == [200] * 6
        assert all(r.body == b"slept 2.0\n" for r in responses)
        assert srv.wait(30) == 0
        assert "graceful stop" in srv.log_text()


def test_sighup_reloads_workers_and_lazy_apps_reimport() -> None:
    for lazy in (False, True):
        args = ["--lazy-apps"] if lazy else []
        with ServerProcess("tests.server.apps:router", workers=2, threads=2, args=args) as srv:
            before = json.loads(get(srv.host, srv.port, "/echo").body)["imported_at"]
            old = set(srv.ready_worker_pids())
            mark = srv.log_position()
            srv.signal(signal.SIGHUP)
            srv.wait_for_log("reload complete", after=mark, timeout=20)
            for pid in old:
                srv.wait_for_log(rf"\(pid: {pid}\) exited", after=mark, timeout=20)
            new = set(srv.ready_worker_pids(after=mark))
            assert len(new) == 2 and not new & old
            after = json.loads(get(srv.host, srv.port, "/echo").body)
            assert after["pid"] in new
            if lazy:
                assert after["imported_at"] != before, "--lazy-apps workers import the app afresh"
            else:
                assert after["imported_at"] == before, "the master's import is reused"


def test_max_requests_recycles_workers() -> None:
    args = ["--max-requests", "15", "--max-requests-jitter", "0"]
    with ServerProcess("tests.server.apps:router", workers=1, threads=2, args=args) as srv:
        first = srv.worker_pids()
        pids = {pid_of(srv, retries=10) for _ in range(40)}
        assert len(pids) >= 2, "a worker past --max-requests 15 was replaced"
        assert "served 15 requests; recycling" in srv.log_text()
        assert first[0] in pids


def test_harakiri_kills_the_stuck_worker_and_logs_the_path() -> None:
    with ServerProcess(
        "tests.server.apps:router", workers=1, threads=2, args=["--harakiri", "1"]
    ) as srv:
        victim = srv.worker_pids()[0]
        with Client(srv.host, srv.port, timeout=20) as c:
            c.send(b"GET /slow/stuck?s=60 HTTP/1.1\r\nHost: t\r\n\r\n")
            try:
                assert c.read_response() is None
            except ConnectionResetError:
                pass  # killed with the connection open: reset or EOF, both fine.
        srv.wait_for_log(r"harakiri: worker 1 .*GET /slow/stuck for \d", timeout=15)
        srv.wait_for_log(rf"pid: {victim}\) killed by SIGKILL", timeout=15)
        assert pid_of(srv, retries=10) != victim


def test_ttin_ttou_change_the_worker_count() -> None:
    with ServerProcess("tests.server.apps:router", workers=1, threads=1) as srv:
        mark = srv.log_position()
        srv.signal(signal.SIGTTIN)
        srv.wait_for_log(r"worker 2 \(pid: \d+\) ready", after=mark, timeout=15)
        assert len(srv.worker_pids()) == 2
        mark = srv.log_position()
        srv.signal(signal.SIGTTOU)
        srv.wait_for_log(r"worker 2 \(pid: \d+\) exited", after=mark, timeout=15)
        assert len(srv.worker_pids()) == 1
        assert pid_of(srv) in srv.worker_pids()


def test_app_failing_to_import_in_the_master_stops_it() -> None:
    srv = ServerProcess(
        "tests.server.apps:router", env={"SERVER_TEST_BROKEN_APP": "1"}, ready_timeout=30
    )
    with pytest.raises(ServerStartError):
        srv.start()
    assert srv.returncode == EXIT_APP_LOAD
    assert "cannot load the application" in srv.log_text()


def test_workers_dying_at_boot_make_the_master_give_up() -> None:
    srv = ServerProcess(
        "tests.server.apps:router",
        args=["--lazy-apps"],
        env={"SERVER_TEST_BROKEN_APP": "1"},
        ready_timeout=30,
    )
    with pytest.raises(ServerStartError):
        srv.start()
    assert srv.returncode == EXIT_BOOT_FAILED
    assert "died before it was ready 3 times in a row" in srv.log_text()
    assert not srv.worker_pids()


def test_workers_leave_when_their_master_is_killed() -> None:
    srv = ServerProcess("tests.server.apps:router", workers=2, threads=1).start()
    try:
        workers = srv.worker_pids()
        os.kill(srv.pid, signal.SIGKILL)
        assert workers
        for pid in workers:  # they notice on their own (getppid() changes) within a tick or two
            assert not _running(pid, within=10.0), f"worker {pid} outlived its killed master"
    finally:
        srv.stop()


def _running(pid: int, within: float) -> bool:
    """False once ``pid`` is gone or a zombie (killed, not yet reaped by its new parent)."""
    try:
        proc = psutil.Process(pid)
        deadline = time.monotonic() + within
        while proc.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() > deadline:
                return True
            try:
                proc.wait(0.1)
            except psutil.TimeoutExpired:
                continue
            return False
        return False
    except psutil.NoSuchProcess:
        return False


def test_more_keep_alive_clients_than_threads_are_all_served() -> None:
    """Idle kept-alive connections are parked, not held by a core, while others wait."""
    with ServerProcess(
        "tests.server.apps:router", workers=1, threads=2, args=["--keepalive-timeout", "30"]
    ) as srv:
        clients = [Client(srv.host, srv.port, timeout=10) for _ in range(6)]
        try:
            for c in clients:
                c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            started = time.monotonic()
            for c in clients:
                response = c.read_response()
                assert response is not None and response.status == 200
            assert time.monotonic() - started < 8, "waiting clients were held behind idle ones"
        finally:
            for c in clients:
                c.close()


def test_last_request_before_recycling_says_close() -> None:
    args = ["--max-requests", "5", "--max-requests-jitter", "0"]
    with ServerProcess("tests.server.apps:router", workers=1, threads=2, args=args) as srv:
        with Client(srv.host, srv.port) as c:
            for i in range(5):
                c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                response = c.read_response()
                assert response is not None and response.status == 200
                assert (response.header("connection") == "close") is (i == 4), i
            assert c.closed_by_server(10)
