"""The proving ground's own tools: the gearmand fixture (restart on its port, connection counts
over the admin protocol, worker respawn) and the load driver: its verdicts (table-driven, no
sockets), and its progress bar, which names a stall (a held request on a loopback server).
"""

from __future__ import annotations

import io
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import gearman
import pytest

from examples.load import LoadResult, _classify, run_load
from examples.support.gearmand import Gearmand, Workers

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("status", "body", "payload", "expected"),
    [
        (200, {"payload": "abc", "result": "cba"}, "abc", "ok"),
        (200, {"payload": "abc", "result": "fed"}, "abc", "wrong"),  # another request's result
        (200, {"payload": "def", "result": "cba"}, "abc", "wrong"),
        (200, {"error": "x"}, "abc", "wrong"),
        (404, {"error": "no route"}, "abc", "wrong"),
        (500, {"error": "KeyError"}, "abc", "http_5xx"),
        (503, {"error": "ServerUnavailable"}, "abc", "http_5xx"),
    ],
)
def test_classify(status: int, body: dict[str, str], payload: str, expected: str) -> None:
    assert _classify(status, json.dumps(body).encode(), payload)[0] == expected


def test_classify_unparsable_body_is_wrong() -> None:
    assert _classify(200, b"<html>", "abc")[0] == "wrong"


def test_run_load_counts_refused_connections() -> None:
    # Port 1 on loopback: nothing listens there, every request is refused.
    result = run_load("http://127.0.0.1:1", total=5, concurrency=2, timeout=2.0)
    assert (result.conn_errors, result.ok, result.total) == (5, 0, 5), result.summary()


class _StallWatcher(io.StringIO):
    """Stands in for sys.stderr; sets ``noted`` once the progress bar explains a stall."""

    def __init__(self) -> None:
        super().__init__()
        self.noted = threading.Event()

    def write(self, text: str) -> int:
        if "slow request" in text:
            self.noted.set()
        return super().write(text)


def test_progress_says_what_a_stall_waits_for(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server on port 0 (a thread of this process) that answers every request at once but holds
    # the first one until the bar has said it is waiting on it: the stall is named, not silent.
    release = threading.Event()
    held = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = parse_qs(urlsplit(self.path).query)["payload"][0]
            if held.acquire(blocking=False):
                release.wait(10.0)
            body = json.dumps({"payload": payload, "result": payload[::-1]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    watcher = _StallWatcher()
    monkeypatch.setattr(sys, "stderr", watcher)
    results: list[LoadResult] = []
    url = f"http://127.0.0.1:{server.server_address[1]}"
    driving = threading.Thread(
        target=lambda: results.append(run_load(url, total=20, concurrency=4, progress=True))
    )
    try:
        driving.start()
        noted = watcher.noted.wait(15.0)
    finally:
        release.set()
        driving.join(30.0)
        server.shutdown()
        server.server_close()
        serving.join(10.0)
    assert noted, f"the bar never said what it waited for: {watcher.getvalue()!r}"
    assert "waiting" in watcher.getvalue() and "on 1 slow request (each gives up after 10 s)" in (
        watcher.getvalue()
    ), watcher.getvalue()
    assert results and results[0].ok == 20, results


def _reverse(address: str, payload: bytes) -> bytes:
    client = gearman.GearmanClient([address])
    try:
        request = client.submit_job(b"reverse", payload, poll_timeout=10.0)
        assert request.state == gearman.JOB_COMPLETE, request.state
        result: bytes = request.result
        return result
    finally:
        client.shutdown()


def test_gearmand_restarts_on_its_port(gearmand: Gearmand, gearman_workers: Workers) -> None:
    gearman_workers.ensure()
    port, old_pid = gearmand.port, gearmand.pid
    gearmand.kill()
    assert not gearmand.is_running()
    gearmand.start()
    assert (gearmand.port, gearmand.admin("getpid")) == (port, [f"OK {gearmand.pid}"])
    assert gearmand.pid != old_pid
    gearman_workers.ensure()  # the workers reconnect on their own; ensure() waits for it
    assert _reverse(gearmand.address, b"restart") == b"tratser"


def test_worker_respawn_and_connection_count(gearmand: Gearmand, gearman_workers: Workers) -> None:
    gearman_workers.ensure()
    before = list(gearman_workers.pids)
    killed = gearman_workers.kill_one()
    assert killed in before and killed not in gearman_workers.pids
    gearman_workers.ensure()
    assert len(gearman_workers.pids) == 2 and killed not in gearman_workers.pids
    assert gearmand.registered_workers() >= 2
    client = gearman.GearmanClient([gearmand.address])
    try:
        clients_before = gearmand.client_connection_count()
        client.submit_job(b"reverse", b"x", poll_timeout=10.0)
        assert gearmand.client_connection_count() == clients_before + 1
    finally:
        client.shutdown()
