"""``python -m safeclients prove``: every exit status, the report, and that nothing outlives it.

Each test runs the real CLI in a subprocess, from the repository root, on an app of
``tests/prove/apps`` (their ``MeetingClient`` makes two threads meet inside a call, so an
overlap is certain, not lucky). Runs in the pytest process; every child is waited for with a
bound.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from safeclients._prove.cli import (
    EXIT_CLEAN,
    EXIT_INTERRUPTED,
    EXIT_NOT_RUN,
    EXIT_UNSAFE,
    EXIT_USAGE,
)

REPO = Path(__file__).resolve().parents[2]
APPS = "tests.prove.apps"
BOUND = 120  # seconds for one CLI run, on a shared 2-core machine
SITE = "tests/prove/apps/_fake.py:"


def prove(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safeclients", "prove", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BOUND,
        env={**os.environ, **(env or {})},
    )


def test_a_client_used_by_two_threads_at_once_exits_1_and_names_both_sides() -> None:
    done = prove(
        f"{APPS}.shared:app",
        "--workers",
        "1",
        "--threads",
        "4",
        "--concurrency",
        "4",
        "--requests",
        "20",
    )
    assert done.returncode == EXIT_UNSAFE, done.stdout + done.stderr
    out = done.stdout
    assert f"UNSAFE  {APPS}.shared.client ({APPS}._fake.MeetingClient)" in out, out
    assert "used by two threads at once" in out, out
    first = next(line for line in out.splitlines() if line.startswith("  first "))
    second = next(line for line in out.splitlines() if line.startswith("  second "))
    for line in (first, second):
        assert "in call() at " + SITE in line, line
    assert first.split("thread ")[1] != second.split("thread ")[1], (first, second)
    assert "use     safeclients.per_thread(factory)" in out, out
    assert "responses: 200: 20" in out, out


def test_an_instance_connected_before_the_fork_used_by_two_workers_exits_1() -> None:
    # --threads 1: every request runs on a worker's main thread (core 0), the one thread whose
    # threading.local still holds the master's warmed-up client.
    done = prove(
        f"{APPS}.warmed_local:app",
        "--workers",
        "2",
        "--threads",
        "1",
        "--concurrency",
        "8",
        "--requests",
        "40",
    )
    assert done.returncode == EXIT_UNSAFE, done.stdout + done.stderr
    out = done.stdout
    assert f"UNSAFE  {APPS}.warmed_local._local.client" in out, out
    assert "one instance used in 2 processes" in out, (
        "both workers should have served some of 40 requests on 8 connections:\n" + out
    )
    assert "held an open connection at the fork" in out, out
    assert "thread 'MainThread'" in out, out


def test_the_json_report_carries_the_same_verdict_and_the_status_counts() -> None:
    done = prove(
        f"{APPS}.nested:app",
        "--workers",
        "1",
        "--threads",
        "4",
        "--concurrency",
        "4",
        "--requests",
        "12",
        "--path",
        "/a",
        "--path",
        "/b?x=1",
        "--json",
    )
    assert done.returncode == EXIT_UNSAFE, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["statuses"] == {"200": 12}
    assert report["paths"] == ["/a", "/b?x=1"]
    watched = {c["where"]: c for c in report["clients"]}
    assert set(watched) == {f"{APPS}.nested.CLIENTS['main']", f"{APPS}.nested.service.client"}
    assert watched[f"{APPS}.nested.CLIENTS['main']"]["aliases"] == [f"{APPS}.nested.alias"]
    (unsafe,) = report["unsafe"]
    assert unsafe["where"] == f"{APPS}.nested.CLIENTS['main']"
    assert unsafe["kind"] == "threads" and unsafe["count"] >= 1
    assert unsafe["first"]["site"].startswith(SITE) and unsafe["second"]["site"].startswith(SITE)
    assert unsafe["suggest"] == "safeclients.per_thread(factory)"
    assert any("tuple" in note and "not watched" in note for note in report["notes"]), report


def test_an_app_whose_clients_are_wrapped_exits_0() -> None:
    done = prove(f"{APPS}.wrapped:app", "--requests", "24")
    assert done.returncode == EXIT_CLEAN, done.stdout + done.stderr
    assert "watched 0 clients; 1 already wrapped by safeclients" in done.stdout
    assert "0 unsafe uses seen" in done.stdout and "responses: 200: 24" in done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([f"{APPS}.shared"], "is not MODULE:APP"),
        ([f"{APPS}.shared:app", "--workers", "0"], "0 is not at least 1"),
        ([f"{APPS}.shared:app", "--path", "job"], "must start with /"),
        ([f"{APPS}.shared:app", "--timeout", "inf"], "finite number of seconds"),
        ([f"{APPS}.shared:app", "--requests", "many"], "'many' is not a whole number"),
        ([], "the following arguments are required: MODULE:APP"),
    ],
)
def test_a_bad_command_line_exits_2_with_a_sentence(args: list[str], says: str) -> None:
    done = prove(*args)
    assert done.returncode == EXIT_USAGE, done.stdout + done.stderr
    assert says in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("app", "says"),
    [
        ("broken:app", "raised RuntimeError: the database URL is not set"),
        ("exits:app", "called sys.exit('usage: app --config FILE')"),
        ("nowhere:app", "ModuleNotFoundError: No module named 'tests.prove.apps.nowhere'"),
        ("shared:nowhere", "has no attribute 'nowhere'"),
    ],
)
def test_an_app_that_cannot_be_imported_exits_3_saying_why(app: str, says: str) -> None:
    done = prove(f"{APPS}.{app}", "--requests", "5")
    assert done.returncode == EXIT_NOT_RUN, done.stdout + done.stderr
    assert "safeclients prove: could not run" in done.stderr and says in done.stderr, done.stderr
    assert done.stdout == ""


def test_without_the_server_extra_it_exits_3_saying_what_to_install(tmp_path: Path) -> None:
    # httptools made unimportable, as in an environment with the library alone.
    fake = tmp_path / "httptools"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'httptools'\", name='httptools')\n"
    )
    done = prove(f"{APPS}.shared:app", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == EXIT_NOT_RUN, done.stdout + done.stderr
    assert "pip install 'safeclients[server]'" in done.stderr, done.stderr


def test_an_import_that_never_ends_exits_3_after_the_start_timeout() -> None:
    done = prove(f"{APPS}.slow_import:app", "--start-timeout", "3")
    assert done.returncode == EXIT_NOT_RUN, done.stdout + done.stderr
    assert "the server did not start" in done.stderr, done.stderr


def test_a_client_type_without_a_profile_is_not_watched_until_one_is_registered() -> None:
    args = ["--workers", "1", "--threads", "4", "--concurrency", "4", "--requests", "8"]
    unseen = prove(f"{APPS}.unknown:app", *args)
    assert unseen.returncode == EXIT_CLEAN, unseen.stdout + unseen.stderr
    assert "watched 0 clients" in unseen.stdout, unseen.stdout
    assert "note: no client of a known type was found" in unseen.stdout, unseen.stdout
    seen = prove(f"{APPS}.unknown:app", *args, "--profiles", f"{APPS}.unknown_profiles")
    assert seen.returncode == EXIT_UNSAFE, seen.stdout + seen.stderr
    assert f"UNSAFE  {APPS}.unknown.client ({APPS}._fake.UnknownClient)" in seen.stdout
    assert "use     safeclients.pooled(factory)" in seen.stdout, seen.stdout


def test_a_profiles_module_that_fails_exits_3() -> None:
    done = prove(f"{APPS}.shared:app", "--profiles", f"{APPS}.broken")
    assert done.returncode == EXIT_NOT_RUN, done.stdout + done.stderr
    assert "the --profiles module: importing tests.prove.apps.broken raised" in done.stderr


@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, EXIT_INTERRUPTED)],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_mid_run_stops_the_master_and_its_workers(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "safeclients",
            "prove",
            f"{APPS}.stuck:app",
            "--workers",
            "1",
            "--threads",
            "2",
            "--requests",
            "4",
            "--timeout",
            "60",
        ],
        cwd=REPO,
        env={**os.environ, "PROVE_TEST_FIFO": str(fifo)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell runs a background job with SIGINT ignored, and a child keeps that: Python
        # then never raises KeyboardInterrupt. The CLI gets SIGINT as a terminal would give it.
        preexec_fn=_default_sigint,
    )
    try:
        # Opening the FIFO waits for the app to open it: its request is running now.
        with open(fifo) as reading:
            worker, master = (int(pid) for pid in reading.readline().split())
        cli.send_signal(sig)
        _, err = cli.communicate(timeout=BOUND)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(BOUND)
    assert cli.returncode == status, err
    for pid in (worker, master):
        assert not _running(pid), f"pid {pid} outlived the CLI that started it"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
