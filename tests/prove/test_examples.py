"""``python -m safeclients prove`` on the repository's Gearman examples, against real gearmand.

The unsafe app and the hand-written ``threading.local`` warmed up at import exit 1 naming their
client; the safeclients fixes exit 0 with every response a 200. Each run is the real CLI in a
subprocess (2 workers, bounded requests); gearmand and its two reverse workers are the session's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.support.gearmand import Gearmand, Workers
from safeclients._prove.cli import EXIT_CLEAN, EXIT_UNSAFE

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BOUND = 180
REQUESTS = 120


@pytest.fixture
def gearman_env(gearmand: Gearmand, gearman_workers: Workers) -> dict[str, str]:
    gearmand.start()  # no-op when running
    gearman_workers.ensure()
    return {**os.environ, "GEARMAN_SERVERS": gearmand.address, "GEARMAN_JOB_TIMEOUT": "3"}


def prove(app: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "safeclients",
            "prove",
            f"examples.gearman.{app}:application",
            "--path",
            "/job?payload=abc",
            "--requests",
            str(REQUESTS),
            "--timeout",
            "8",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOUND,
    )


def test_app_unsafe_exits_1_naming_its_client(gearman_env: dict[str, str]) -> None:
    done = prove("app_unsafe", gearman_env, "--threads", "4", "--concurrency", "16")
    assert done.returncode == EXIT_UNSAFE, done.stdout + done.stderr
    out = done.stdout
    assert "UNSAFE  examples.gearman.app_unsafe.client (gearman.client.GearmanClient)" in out, out
    assert "used by two threads at once" in out, out
    assert "in submit_job() at examples/gearman/_app.py:" in out, out
    assert "use     safeclients.per_thread(factory)" in out, out


def test_app_handwritten_local_warmed_exits_1_naming_its_client(
    gearman_env: dict[str, str],
) -> None:
    # 2 threads per worker: core 0, the main thread holding the master's client, serves about
    # half the requests of each worker.
    done = prove("app_handwritten_local_warmed", gearman_env, "--threads", "2")
    assert done.returncode == EXIT_UNSAFE, done.stdout + done.stderr
    out = done.stdout
    assert "UNSAFE  examples.gearman.app_handwritten_local_warmed._local.client" in out, out
    assert "one instance used in 2 processes" in out, out
    assert "thread 'MainThread'" in out and "held an open connection at the fork" in out, out


@pytest.mark.parametrize("app", ["app_per_thread", "app_pooled", "app_locked"])
def test_the_safeclients_fixes_exit_0(gearman_env: dict[str, str], app: str) -> None:
    done = prove(app, gearman_env)
    assert done.returncode == EXIT_CLEAN, done.stdout + done.stderr
    assert "watched 0 clients; 1 already wrapped by safeclients" in done.stdout, done.stdout
    assert f"responses: 200: {REQUESTS}\n" in done.stdout, done.stdout
    assert "0 unsafe uses seen" in done.stdout, done.stdout
