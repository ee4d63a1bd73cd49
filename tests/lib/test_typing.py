"""mypy sees the client's own type through a decorated factory (reveal_type)."""

from __future__ import annotations

from pathlib import Path

import pytest

SOURCE = """
import safeclients

class Client:
    def submit(self, payload: bytes) -> bytes:
        return payload

@safeclients.per_thread
def per_thread_client() -> Client:
    return Client()

@safeclients.pooled(size=4, timeout=2.0)
def pooled_client() -> Client:
    return Client()

locked_client = safeclients.locked(Client())

class Job:
    def __call__(self) -> int:
        return 1

reveal_type(safeclients.locked(Job()))
reveal_type(safeclients.guarded(Job()))

reveal_type(per_thread_client)
reveal_type(pooled_client)
reveal_type(locked_client)
reveal_type(per_thread_client.submit(b"x"))
"""


def test_reveal_type_is_the_client_type(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    module = tmp_path / "uses_safeclients.py"
    module.write_text(SOURCE)
    root = Path(__file__).resolve().parents[2]
    stdout, stderr, status = api.run(
        [
            "--strict",
            "--python-version",
            "3.11",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--config-file",
            str(root / "pyproject.toml"),
            str(module),
        ]
    )
    revealed = [
        line.split("Revealed type is ")[1]
        for line in stdout.splitlines()
        if "Revealed type is" in line
    ]
    assert revealed == [
        '"uses_safeclients.Job"',  # a callable instance is the client, not a factory
        '"uses_safeclients.Job"',
        '"uses_safeclients.Client"',
        '"uses_safeclients.Client"',
        '"uses_safeclients.Client"',
        '"bytes"',
    ], stdout + stderr
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert errors == [], stdout
