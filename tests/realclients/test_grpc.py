"""gRPC channels through ``per_process`` (the GRPC_CHANNEL profile), on grpcio's own server.

``tests/realclients/grpc_parent.py`` runs as its own process (gRPC and ``fork()``): calls through
a stub-style multi-callable, a fork child that calls with its own channel and exits, the
parent's calls after it, and after a server restart on the same port. Every answer must echo its
own request; the child must succeed; the parent keeps its one channel (gRPC reconnects by
itself, so at most one call fails after the restart).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_grpc_channel_per_process_across_a_fork_and_a_server_restart() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.realclients.grpc_parent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, done.stdout + done.stderr
    report = json.loads(lines[-1])
    calls = 50
    assert report["before"] == {"ok": calls, "wrong": 0, "failed": 0}, report
    assert report["child_status"] == 0, "the child's calls through its own channel failed"
    assert report["after_fork"] == {"ok": calls, "wrong": 0, "failed": 0}, report
    after = report["after_restart"]
    assert after["wrong"] == 0 and after["failed"] <= 1, report
    assert report["created"] == 1, "the parent's channel was replaced: it reconnects by itself"
