"""The docs build is strict: a broken link, anchor or API reference fails it (issue 14).

CI builds the real site (``scripts/docs.sh``); these tests build a copy of it with one broken
reference added, and check that the build refuses it and names it. They build without
``--strict`` (``scripts/docs.sh`` passes it too), so a ``mkdocs.yml`` that quietly drops
``strict: true`` or a link validation fails here. Each build is a child process of the
pytest process, with a timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0  # seconds for one build, on a shared 2-core machine


def _build_with(tmp_path: Path, broken_line: str) -> subprocess.CompletedProcess[str]:
    for name in ("docs", "safeclients"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("mkdocs.yml", "CHANGELOG.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    page = tmp_path / "docs" / "trap.md"
    page.write_text(page.read_text() + "\n" + broken_line + "\n")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--site-dir", str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.mark.parametrize(
    ("broken_line", "named"),
    [
        ("See [a page](no-such-page.md).", "no-such-page.md"),
        ("See [a section](policies.md#no-such-section).", "#no-such-section"),
        ("See [a function][safeclients.no_such_function].", "safeclients.no_such_function"),
    ],
    ids=["page", "anchor", "api-reference"],
)
def test_a_broken_reference_fails_the_build(tmp_path: Path, broken_line: str, named: str) -> None:
    done = _build_with(tmp_path, broken_line)
    assert done.returncode != 0, f"the build accepted {broken_line!r}:\n{done.stderr}"
    assert named in done.stderr, f"the build failed without naming {named!r}:\n{done.stderr}"
