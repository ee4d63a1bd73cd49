"""The fork trap: a global client that connects at import time, in the master, before the fork.

Where the master imports the app (uWSGI's default loading, gunicorn ``--preload``, our server),
every worker inherits the master's connected socket. ``/conn`` reports, per answering worker, the
local port of the client's socket: the unsafe variant shows one port from two worker pids (and
gearmand counts one client); the safeclients variants show each worker its own ports, none of
them the master's, and gearmand counts a client per worker beside the master's.
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from examples.support.gearmand import Gearmand
from tests.integration.conftest import serve

pytestmark = pytest.mark.integration

PRELOADING = ("ours", "uwsgi", "gunicorn-preload")
SAFE_VARIANTS = ("import_connect_safe", "import_connect_per_thread")
BATCH = 16
MAX_BATCHES = 20


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, Any] = json.load(response)
        return data


def ports_by_pid(url: str) -> dict[int, set[int]]:
    """Ask ``/conn`` in parallel batches until two worker pids answered (bounded)."""
    seen: dict[int, set[int]] = {}
    with ThreadPoolExecutor(BATCH) as pool:
        for _ in range(MAX_BATCHES):
            for answer in pool.map(_get, [url + "/conn"] * BATCH):
                seen.setdefault(int(answer["pid"]), set()).update(answer["ports"])
            if len(seen) >= 2:
                break
    assert len(seen) >= 2, f"only worker(s) {sorted(seen)} answered {MAX_BATCHES * BATCH} requests"
    return seen


def _wait_client_count(gearmand: Gearmand, at_least: int, timeout: float = 10.0) -> int:
    """gearmand notices connects and closes asynchronously: poll its admin port, bounded."""
    deadline = time.monotonic() + timeout
    while (count := gearmand.client_connection_count()) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


@pytest.mark.parametrize("kind", PRELOADING)
def test_unsafe_import_time_client_shares_one_socket(
    kind: str, gearman_env: dict[str, str], gearmand: Gearmand
) -> None:
    with serve(kind, "examples.gearman.app_import_connect_unsafe:application", gearman_env) as srv:
        seen = ports_by_pid(srv.url)
        clients = gearmand.client_connection_count()
    pids = sorted(seen)
    shared = set.intersection(*seen.values())
    assert shared, f"under {kind} the workers {pids} did not share a socket: ports {seen}"
    assert all(len(ports) == 1 for ports in seen.values()), seen
    assert clients == 1, f"gearmand saw {clients} client connections, expected the 1 shared one"


@pytest.mark.parametrize("variant", SAFE_VARIANTS)
@pytest.mark.parametrize("kind", PRELOADING)
def test_safeclients_give_each_worker_its_own_connection(
    kind: str, variant: str, gearman_env: dict[str, str], gearmand: Gearmand
) -> None:
    with serve(kind, f"examples.gearman.app_{variant}:application", gearman_env) as srv:
        seen = ports_by_pid(srv.url)
        # The master's import-time connection plus at least one per worker.
        clients = _wait_client_count(gearmand, 1 + len(seen))
    pids = sorted(seen)
    for pid in pids:
        assert seen[pid], f"worker {pid} reported no connected socket under {kind}: {seen}"
        for other in pids:
            if other != pid:
                assert not seen[pid] & seen[other], (
                    f"{variant} under {kind}: workers {pid} and {other} share ports "
                    f"{seen[pid] & seen[other]}"
                )
    assert clients >= 1 + len(pids), (
        f"gearmand saw {clients} client connections; expected the master's plus one per worker "
        f"({1 + len(pids)})"
    )
