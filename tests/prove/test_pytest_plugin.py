"""The pytest plugin (``safeclients.pytest_plugin``, entry point ``pytest11``): its fixtures work
in a user's suite, and a failing test still stops what ``proving_ground`` started.

Each test runs pytest in a subprocess (the user's view: the plugin comes from the installed
distribution's entry point, nothing is configured), bounded in time.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
BOUND = 180


def pytest_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BOUND,
    )


def test_the_plugin_is_registered_by_the_distribution() -> None:
    # As pluggy looks (every distribution, no deduplication: a stale safeclients.egg-info at
    # the repository root, on sys.path through pytest's `pythonpath`, would hide it otherwise).
    found = [
        ep.value
        for dist in importlib.metadata.distributions()
        for ep in dist.entry_points
        if ep.group == "pytest11" and ep.name == "safeclients"
    ]
    assert "safeclients.pytest_plugin" in found, found


def test_the_documented_example_passes_and_shows_the_regressions_it_catches() -> None:
    done = pytest_run("examples/prove", "-rxX")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed, 2 xfailed" in done.stdout, done.stdout


def test_the_unsafe_examples_fail_naming_the_global_and_the_fix() -> None:
    done = pytest_run("examples/prove", "--runxfail", "-k", "unsafe")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 failed, 2 deselected" in done.stdout, done.stdout
    assert "UNSAFE  examples.prove.shop.db (sqlite3.Connection)" in done.stdout, done.stdout
    assert "use     safeclients.per_thread(factory)" in done.stdout, done.stdout


def test_a_failing_test_still_stops_its_proving_ground(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    test_file = tmp_path / "test_fails.py"
    test_file.write_text(
        textwrap.dedent(f"""\
        def test_fails(proving_ground):
            ground = proving_ground("tests.prove.apps.wrapped:app", workers=2, threads=2)
            pids = [ground.pid, *ground.worker_pids()]
            open({str(pids)!r}, "w").write(" ".join(map(str, pids)))
            assert False, "the test fails with its server running"
        """)
    )
    done = pytest_run(str(test_file), "--rootdir", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the test fails with its server running" in done.stdout, done.stdout
    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 3
    for pid in started:
        try:
            alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        assert not alive, f"pid {pid} outlived the test that started it"
