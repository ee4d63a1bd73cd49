"""``python -m safeclients audit``: output and exit statuses, in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from safeclients.__main__ import EXIT_CLEAN, EXIT_FOUND, EXIT_NOT_AUDITED, EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]
FIXTURES = "tests.audit.fixtures"


def audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safeclients", "audit", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unsafe_app_exits_1_and_names_each_global() -> None:
    result = audit(f"{FIXTURES}.unsafe_app")
    assert result.returncode == EXIT_FOUND, result.stderr
    out = result.stdout
    assert out.startswith(f"safeclients audit of {FIXTURES}.unsafe_app: 12 unsafe globals")
    assert f"UNSAFE  {FIXTURES}.unsafe_app.jobs\n  type     gearman.client.GearmanClient" in out
    assert "OPEN connection at import time" in out
    assert "use      safeclients.per_thread(factory)" in out


def test_wrapped_and_clean_apps_exit_0() -> None:
    result = audit(f"{FIXTURES}.wrapped_app", f"{FIXTURES}.clean_app")
    assert result.returncode == EXIT_CLEAN, result.stdout + result.stderr
    assert "0 unsafe globals, 2 already wrapped" in result.stdout
    assert f"SAFE    {FIXTURES}.wrapped_app.db" in result.stdout


def test_json_output() -> None:
    result = audit("--json", f"{FIXTURES}.unsafe_app", f"{FIXTURES}.wrapped_app")
    assert result.returncode == EXIT_FOUND
    report = json.loads(result.stdout)
    assert len(report["unsafe"]) == 12 and len(report["wrapped"]) == 2
    assert {
        "where",
        "type_name",
        "reason",
        "suggest",
        "connected",
        "connection",
        "wrapped",
        "aliases",
        "safety",
    } == set(report["unsafe"][0])


def test_usage_errors_exit_2() -> None:
    result = audit()
    assert result.returncode == EXIT_USAGE
    assert "the following arguments are required: MODULE" in result.stderr


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (
            f"{FIXTURES}.broken_app",
            "could not audit tests.audit.fixtures.broken_app: importing it "
            "raised ConnectionRefusedError",
        ),
        (
            "no.such.module",
            "could not audit no.such.module: importing it raised ModuleNotFoundError",
        ),
    ],
)
def test_import_errors_could_not_be_audited(module: str, message: str) -> None:
    result = audit(module)
    assert result.returncode == EXIT_NOT_AUDITED
    assert message in result.stderr


def test_the_unsafe_gearman_example() -> None:
    result = audit("examples.gearman.app_unsafe")
    assert result.returncode == EXIT_FOUND, result.stdout + result.stderr
    assert (
        "UNSAFE  examples.gearman.app_unsafe.client\n  type     gearman.client.GearmanClient"
        in result.stdout
    )


def test_the_wrapped_gearman_examples_are_safe() -> None:
    variants = [f"examples.gearman.app_{v}" for v in ("per_thread", "locked", "pooled")]
    result = audit(*variants)
    assert result.returncode == EXIT_CLEAN, result.stdout + result.stderr
    assert "0 unsafe globals, 3 already wrapped" in result.stdout


@pytest.mark.integration
def test_a_connection_made_at_import_is_reported_open(gearmand: Any) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "safeclients",
            "audit",
            "examples.gearman.app_import_connect_unsafe",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GEARMAN_SERVERS": gearmand.address},
    )
    assert result.returncode == EXIT_FOUND, result.stdout + result.stderr
    assert f"OPEN connection at import time: {gearmand.address}" in result.stdout
