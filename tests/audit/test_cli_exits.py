"""Issue 15 items 11 and 17: the audit CLI ends, bounded, with a status that tells the truth.

Each test runs the real CLI in a subprocess over a fixture app that misbehaves at import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from safeclients.__main__ import EXIT_CLEAN, EXIT_FOUND, EXIT_NOT_AUDITED, EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]
FIXTURES = "tests.audit.fixtures"

# Far below the fixture thread's own 300 s wait: a CLI that waits for that thread is killed here
# and the test fails with subprocess.TimeoutExpired.
BOUND = 60


def audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safeclients", "audit", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BOUND,
    )


def test_a_non_daemon_thread_started_at_import_does_not_hold_the_audit() -> None:
    result = audit(f"{FIXTURES}.thread_app")
    assert result.returncode == EXIT_CLEAN, result.stdout + result.stderr
    assert "0 unsafe globals" in result.stdout
    assert "1 non-daemon thread" in result.stderr and "app-poller" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("app", "sentence"),
    [
        (
            "exit_app",
            "could not audit tests.audit.fixtures.exit_app: importing it called sys.exit(0)",
        ),
        (
            "interrupt_app",
            "could not audit tests.audit.fixtures.interrupt_app: importing it raised "
            "KeyboardInterrupt",
        ),
        (
            "argparse_required_app",
            "could not audit tests.audit.fixtures.argparse_required_app: "
            "importing it called sys.exit(2)",
        ),
        (
            "broken_app",
            "could not audit tests.audit.fixtures.broken_app: importing it raised "
            "ConnectionRefusedError",
        ),
    ],
)
def test_an_import_that_ends_early_could_not_be_audited(app: str, sentence: str) -> None:
    result = audit(f"{FIXTURES}.{app}")
    assert result.returncode == EXIT_NOT_AUDITED, result.stdout + result.stderr
    assert sentence in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_an_app_that_parses_options_at_import_does_not_see_the_audits_arguments() -> None:
    result = audit(f"{FIXTURES}.argparse_app")
    assert result.returncode == EXIT_FOUND, result.stdout + result.stderr
    assert f"UNSAFE  {FIXTURES}.argparse_app.db" in result.stdout


def test_a_key_whose_repr_raises_is_named_by_its_type() -> None:
    result = audit(f"{FIXTURES}.bad_key_app")
    assert result.returncode == EXIT_FOUND, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"UNSAFE  {FIXTURES}.bad_key_app.SHARDS[<Key instance at 0x" in result.stdout, (
        result.stdout
    )


def test_an_import_that_waits_is_cut_off_by_the_import_timeout() -> None:
    result = audit(f"{FIXTURES}.blocking_app", "--import-timeout", "0.5")
    assert result.returncode == EXIT_NOT_AUDITED, result.stdout + result.stderr
    assert (
        "could not audit tests.audit.fixtures.blocking_app: importing it did not finish "
        "within 0.5 s (--import-timeout)"
    ) in result.stderr


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_a_bad_import_timeout_is_a_usage_error(value: str) -> None:
    result = audit(f"{FIXTURES}.clean_app", "--import-timeout", value)
    assert result.returncode == EXIT_USAGE
    assert "argument --import-timeout" in result.stderr
