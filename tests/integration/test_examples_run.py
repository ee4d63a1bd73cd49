"""Each example's entry point runs from the repository as a user runs it (issue 14).

Every example is started as ``python -m examples....`` in a child process with the repository as
its working directory (a clone after ``scripts/bootstrap.sh``), with small, bounded arguments,
and must exit 0 with its report printed. The README's quick start must be
``examples/quickstart.py`` verbatim, and run against a real gearmand and worker. A static check
makes sure no example or benchmark imports the test suite, and a child process checks that
``examples.support`` loads without pytest.

Entry points not run here, and where they are covered: ``examples.gearman.worker`` (a daemon: the
session's ``gearman_workers`` fixture runs it) and the WSGI apps (served in ``tests/integration``;
the real-client apps by ``examples.realclients.prove`` in ``tests/realclients/test_proof.py``).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.support.gearmand import Gearmand, Workers
from examples.support.memcached import Memcached
from server.testing import ServerProcess

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 120.0  # seconds for one small example run on a loaded 2-core machine


def run_python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python args...`` from the repository root; fail, with its output, on a non-0 exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)[:200]} exited {proc.returncode}:\n{out[-4000:]}"
    return proc


def run_example(*argv: str) -> str:
    """``python -m argv...`` from the repository root; return its output, fail on a non-0 exit."""
    proc = run_python("-m", *argv)
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with ServerProcess("examples.clients.echo_app:application", workers=1, threads=4) as srv:
        yield srv.url


def test_no_example_or_benchmark_imports_the_tests() -> None:
    offenders = []
    for folder in ("examples", "benchmarks"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                # An example *of a test* (examples/prove/test_shop.py: the pytest plugin in
                # use) may import pytest; nothing here may import this repository's tests.
                forbidden = (
                    ("tests.",)
                    if path.name.startswith("test_")
                    else (
                        "tests.",
                        "pytest",
                        "_pytest",
                    )
                )
                offenders += [
                    f"{path.relative_to(REPO_ROOT)}: {n}"
                    for n in names
                    if n == "tests" or n.startswith(forbidden)
                ]
    assert offenders == [], f"{len(offenders)} imports of the test suite or pytest: {offenders}"


def test_support_imports_without_pytest() -> None:
    code = (
        "import sys, examples.support.gearmand, examples.support.memcached, "
        "examples.support.servers, examples.support.backends; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest', "
        "'tests')); print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, f"examples.support pulled in {proc.stdout}{proc.stderr}"


def test_demo_runs() -> None:
    out = run_example(
        "examples.demo", "--requests", "40", "--concurrency", "4", "--variants", "pooled"
    )
    assert "pooled" in out and "variant" in out, out


def _readme_quickstart() -> str:
    """The Python block of the README's quick-start section."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- --8<-- [start:quickstart] -->")
    section = readme[start : readme.index("<!-- --8<-- [end:quickstart] -->", start)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"the quick start should show one Python block, not {len(blocks)}"
    return blocks[0]


def test_quickstart_is_the_readme_block_and_runs(
    gearmand: Gearmand, gearman_workers: Workers
) -> None:
    # The README shows examples/quickstart.py as it is, and runs it as `python -m
    # examples.quickstart` once gearmand and a reverse worker are up (this session's gearmand,
    # named by GEARMAN_SERVERS, the one setting it reads).
    source = (REPO_ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
    assert _readme_quickstart() == source, "README's quick start and examples/quickstart.py differ"
    gearmand.start()
    gearman_workers.ensure()
    proc = run_python("-m", "examples.quickstart", env={"GEARMAN_SERVERS": gearmand.address})
    assert re.fullmatch(
        r"100 jobs, all answered right, through [1-8] clients \(one per thread\)\n", proc.stdout
    ), proc.stdout + proc.stderr


def test_detect_runs() -> None:
    out = run_example("examples.gearman.detect")
    assert "conflicts=" in out, out


def test_load_runs(gearmand: Gearmand, gearman_workers: Workers) -> None:
    gearmand.start()
    gearman_workers.ensure()
    env = {"GEARMAN_SERVERS": gearmand.address, "GEARMAN_JOB_TIMEOUT": "10"}
    with ServerProcess(
        "examples.gearman.app_pooled:application", workers=1, threads=4, env=env
    ) as srv:
        out = run_example("examples.load", srv.url, "-n", "20", "-c", "4", "--quiet")
    assert "20" in out, out


def test_sqlite_ledger_runs(tmp_path: Path) -> None:
    out = run_example(
        "examples.clients.sqlite_ledger",
        str(tmp_path / "ledger.db"),
        "--policy",
        "per_thread",
        "--threads",
        "4",
        "--ops",
        "5",
    )
    assert "per_thread" in out, out


def test_memcache_values_runs(memcached: Memcached) -> None:
    out = run_example(
        "examples.clients.memcache_values",
        memcached.address,
        "--policy",
        "pooled",
        "--threads",
        "4",
        "--ops",
        "10",
    )
    assert "pooled" in out, out


def test_http_keepalive_runs(echo_url: str) -> None:
    out = run_example(
        "examples.clients.http_keepalive",
        echo_url,
        "--policy",
        "per_thread",
        "--threads",
        "4",
        "--ops",
        "5",
    )
    assert "per_thread" in out, out


def test_realclients_prove_runs() -> None:
    # Starts its own redis-server; redis-py pooled keeps every promise today.
    out = run_example(
        "examples.realclients.prove",
        "--clients",
        "redis",
        "--policies",
        "pooled",
        "--servers",
        "ours",
        "--before",
        "20",
        "--after",
        "10",
    )
    assert re.search(r"^redis +pooled +ours ", out, re.M), out  # its row


def test_two_job_servers_runs() -> None:
    out = run_example("examples.gearman.two_servers", "--requests", "40", "--concurrency", "4")
    assert "B killed" in out, out
