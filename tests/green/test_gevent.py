"""gevent as a supported environment: ``locked`` and ``pooled`` keep one greenlet per instance
and never block the hub, wherever the proxy was made; ``per_thread`` means "per greenlet" and
says so once in the log.

Each case runs ``tests/green/_gevent_scenarios.py`` in a fresh interpreter, because
``monkey.patch_all()`` cannot be undone in this one. The child is waited for with a timeout and
killed by PID if it overruns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gevent")

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT = 90.0
PLACES = ("before", "after", "fork-os", "fork-c")
GUARDED_HANG = 8.0  # seconds: the guarded scenario finishes in well under 1 s when it works


def run_scenario(
    *args: str, control: bool = False, timeout: float = CHILD_TIMEOUT
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GREEN_CONTROL": "1" if control else "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.green._gevent_scenarios", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"scenario {args} hung for {timeout:.0f} s (killed)") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=CHILD_TIMEOUT)
    assert proc.returncode == 0, f"scenario {args} exited {proc.returncode}:\n{err.decode()}"
    lines = out.decode().strip().splitlines()
    assert lines, f"scenario {args} printed nothing:\n{err.decode()}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("policy", ["locked", "pooled"])
def test_one_greenlet_per_instance_and_the_hub_keeps_serving(policy: str, where: str) -> None:
    seen = run_scenario("hold", policy, where)
    assert "error" not in seen, seen
    assert seen["bystander_served"], f"the hub stopped while a greenlet waited: {seen}"
    assert seen["inside_while_held"] == 1 and not seen["waiter_entered_while_held"], (
        f"{policy} made {where} the patch let a second greenlet into the held instance: {seen}"
    )
    assert seen["max_inside"] == 1, seen
    assert seen["results"] == [1, 2] and seen["errors"] == [], seen
    assert seen["waits"] == 1 and seen["created"] == 1, seen


@pytest.mark.parametrize("where", ["before", "fork-os"])
def test_control_without_the_renewal_two_greenlets_share_a_locked_instance(where: str) -> None:
    # The bug the renewal fixes (issue 12): an OS RLock made before the patch is re-entered by
    # a second greenlet of the same OS thread. If this stops failing, the test above proves
    # nothing for that place.
    seen = run_scenario("hold", "locked", where, control=True)
    assert seen["max_inside"] == 2 and seen["waiter_entered_while_held"], seen


def test_per_thread_is_per_greenlet_and_says_so_once() -> None:
    seen = run_scenario("per_thread")
    assert seen["requests"] == 10 and seen["distinct"] == 10, (
        f"per_thread made before the patch must give each greenlet its own instance: {seen}"
    )
    assert seen["log_lines"] == 1, f"expected one log line for 10 request greenlets: {seen}"
    assert seen["log_names_factory"] and seen["log_names_pooled"], seen
    assert seen["live_after"] == 0 and seen["closed"] == 10, (
        f"each greenlet's instance must be closed when it ends: {seen}"
    )


def test_importing_safeclients_subscribes_without_importing_gevent() -> None:
    # The renewal costs nothing in a process that never uses gevent: no gevent import, one
    # subscriber in zope.event's list (gevent's own dependency), nothing on the call paths.
    code = (
        "import sys, safeclients, zope.event\n"
        "from safeclients import _green\n"
        "print(int('gevent' in sys.modules), int(_green.on_patch in zope.event.subscribers),"
        " int(_green.threading_patched()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = (
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=CHILD_TIMEOUT,
        )
        .stdout.decode()
        .split()
    )
    assert out == ["0", "1", "0"], out


def test_guarded_made_before_the_patch_does_not_block_the_hub() -> None:
    seen = run_scenario("guarded", timeout=GUARDED_HANG)
    assert seen["results"] == [1, 1], seen


def test_per_process_made_before_the_patch_with_a_yielding_factory() -> None:
    # Issue 24: the worker froze when the factory yielded (a creation lock made before the
    # patch is an OS lock, and the second greenlet blocked the one OS thread on it).
    seen = run_scenario("per_process_yield", timeout=GUARDED_HANG)
    assert seen["errors"] == [] and seen["results"] == [1, 1, 1, 1], seen
    assert seen["made"] == 1, f"four greenlets at once must share one instance: {seen}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_pooled_commit_inside_a_cursors_life_runs_on_its_connection(where: str) -> None:
    # Each greenlet holds a cursor across a yield, then commits through the proxy: the commit
    # must land on the cursor's connection (the greenlet's pin), never on another greenlet's.
    seen = run_scenario("pooled_pin", where)
    assert seen["errors"] == [] and len(seen["pairs"]) == 10, seen
    assert seen["mismatched"] == 0, f"a commit ran on another greenlet's connection: {seen}"
    assert seen["distinct_in_first_two"] == 2, f"two open cursors shared a connection: {seen}"
    assert seen["live"] == 2, seen


def test_guarded_sees_two_greenlets_overlap() -> None:
    seen = run_scenario("guarded_overlap", "raise")
    assert seen["first"] == "left" and seen["second"] is None, seen
    error = seen["second_error"] or ""
    assert error.startswith("ConcurrentUseError") and "greenlet" in error, seen
    assert "Client.slow()" in error and "in slow" in error, f"the other side's stack: {seen}"
    assert seen["conflicts"] == 1, seen
    assert seen["alternate"] == [7] * 10, "greenlets one after another are no conflict"


def test_guarded_counts_two_greenlets_overlap() -> None:
    seen = run_scenario("guarded_overlap", "count")
    assert seen["second"] == 7 and seen["conflicts"] == 1, seen
    assert seen["alternate"] == [7] * 10, seen


@pytest.mark.parametrize("what", ["check", "close"])
def test_a_gevent_timeout_cutting_off_a_check_or_a_close_loses_no_slot(what: str) -> None:
    seen = run_scenario("timeout", what)
    assert seen["cut"], f"the scenario's Timeout never fired: {seen}"
    assert seen["results"] == [1, 1, 1], f"the pool's one slot was lost: {seen}"
    assert seen["live"] == 1 and seen["created"] == 2, seen


@pytest.mark.parametrize("order", ["import-then-patch", "patch-then-import"])
def test_a_context_is_the_greenlet_whenever_safeclients_is_imported(order: str) -> None:
    imports = ["import safeclients", "from gevent import monkey; monkey.patch_all()"]
    if order == "patch-then-import":
        imports.reverse()
    code = "\n".join(
        [
            *imports,
            "import gevent",
            "from safeclients import _context",
            "seen = [gevent.spawn(_context.current).get(timeout=10) for _ in range(2)]",
            "print(type(seen[0]).__name__, int(seen[0] is not seen[1]))",
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        timeout=CHILD_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["Greenlet", "1"], done.stdout.decode()
