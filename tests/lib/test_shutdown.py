"""Interpreter exit: proxies are disposed (final), and a thread stuck in a call cannot hang it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import safeclients

    class Client:
        def __init__(self, name):
            self.name = name
        def ping(self):
            return self.name
        def stuck(self, entered, never):
            entered.set()
            never.wait()
        def close(self):
            print("closed", self.name, flush=True)

    per_thread = safeclients.per_thread(lambda: Client("per_thread"))
    pooled = safeclients.pooled(lambda: Client("pooled"), size=1)
    locked = safeclients.locked(lambda: Client("locked"))
    per_thread.ping(); pooled.ping(); locked.ping()

    entered, never = threading.Event(), threading.Event()
    threading.Thread(target=locked.stuck, args=(entered, never), daemon=True).start()
    entered.wait(30)
    print("exiting", flush=True)
    """
)


def test_exit_closes_instances_and_does_not_wait_for_a_stuck_call() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "exiting"
    assert sorted(lines[1:]) == ["closed per_thread", "closed pooled"], done.stdout
    assert "still in use" in done.stderr, "the stuck locked client is reported, not waited for"
