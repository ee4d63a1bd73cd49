"""``ProvingGround``: start, what a test can see of the running app, verdict, and a stop that
leaves nothing behind. Real server processes on 127.0.0.1 port 0; readiness from their log."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from safeclients.prove import ProveError, ProvingGround, ProvingGroundNotStarted

REPO = Path(__file__).resolve().parents[2]
APPS = "tests.prove.apps"


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.read())  # the apps answer their worker's pid


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_running_ground_shows_its_url_workers_log_and_verdict() -> None:
    with ProvingGround(f"{APPS}.shared:app", workers=2, threads=4, cwd=REPO) as ground:
        workers = ground.worker_pids()
        assert len(workers) == 2 and ground.pid not in workers
        with ThreadPoolExecutor(8) as pool:
            answered = set(pool.map(get, [ground.url + "/"] * 32))
        assert answered <= set(workers), (answered, workers)
        assert (
            "safeclients prove: watching 1 client of tests.prove.apps.shared" in ground.log_text()
        )
        verdict = ground.verdict()  # while running: what was seen so far
        assert [c.where for c in verdict.clients] == [f"{APPS}.shared.client"]
        assert [u.kind for u in verdict.unsafe] == ["threads"], verdict.render()
        master = ground.pid
    assert ground.stop() == 0  # stopped already by the block: the same status again
    assert ground.verdict().unsafe, "the verdict must survive the stop"
    assert ground.directory is not None and not ground.directory.exists()
    for pid in (master, *workers):
        assert not running(pid), f"pid {pid} outlived stop()"


def test_an_app_that_cannot_start_raises_with_the_reason_and_the_log() -> None:
    ground = ProvingGround(f"{APPS}.broken:app", cwd=REPO)
    with pytest.raises(ProvingGroundNotStarted) as raised:
        ground.start()
    assert "raised RuntimeError: the database URL is not set" in str(raised.value)
    assert 'tests/prove/apps/broken.py", line 3' in raised.value.log
    assert ground.directory is not None and not ground.directory.exists()
    with pytest.raises(ProveError, match="the app was not run under it"):
        ground.verdict()


def test_a_ground_not_started_says_so_and_stops_as_a_no_op() -> None:
    ground = ProvingGround(f"{APPS}.shared:app", cwd=REPO)
    with pytest.raises(ProveError, match="was not started: call start"):
        _ = ground.url
    with pytest.raises(ProveError, match="no verdict: the app was not run under it"):
        ground.verdict()
    assert ground.stop() is None and ground.directory is None
