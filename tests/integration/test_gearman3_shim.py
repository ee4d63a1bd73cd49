"""``safeclients.contrib.gearman.patch_gearman3``: gearman3 0.2.1 fails on Python >= 3.9 without
it, and submits jobs to a real gearmand (served by our pygearman workers) with it.

gearman3 and pygearman are both imported as ``gearman``, so gearman3 cannot live in the project's
venv: it is installed with ``pip install --no-deps --target DIR gearman3==0.2.1`` and the client
runs in a child process with ``DIR`` first on ``PYTHONPATH``. DIR is ``$SAFECLIENTS_GEARMAN3_DIR``
or ``.venv/gearman3`` (``scripts/bootstrap.sh`` can create it); the test is skipped, saying so,
when neither exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.support.gearmand import Gearmand, Workers
from safeclients.contrib.gearman import needs_patch, patch_gearman3

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
GEARMAN3_DIR = Path(os.environ.get("SAFECLIENTS_GEARMAN3_DIR", REPO_ROOT / ".venv" / "gearman3"))

CLIENT = r"""
import json, sys
import gearman
out = {"module": gearman.__file__}
def run(tag):
    client = gearman.GearmanClient([sys.argv[1]])
    try:
        results = []
        for payload in ("abc", "x" * 70000 + "y"):  # the second spans many recv() calls
            request = client.submit_job("reverse", payload, poll_timeout=10)
            results.append([request.state, (request.result or b"")[:5].decode()])
        out[tag] = results
    except Exception as exc:  # reported to the test, which asserts on it
        out[tag] = f"{type(exc).__name__}: {exc}"
    finally:
        client.shutdown()
run("before")
if sys.argv[2] == "patch":
    from safeclients.contrib.gearman import patch_gearman3
    out["patched"] = [patch_gearman3(), patch_gearman3()]
    run("after")
print(json.dumps(out))
"""


def test_shim_is_a_no_op_on_pygearman() -> None:
    assert not needs_patch()
    assert patch_gearman3() is False


@pytest.mark.skipif(
    not (GEARMAN3_DIR / "gearman").is_dir(),
    reason=f"gearman3 not installed in {GEARMAN3_DIR} "
    f"(pip install --no-deps --target {GEARMAN3_DIR} gearman3==0.2.1)",
)
def test_gearman3_works_with_the_shim(gearmand: Gearmand, gearman_workers: Workers) -> None:
    gearmand.start()
    gearman_workers.ensure()
    env = {**os.environ, "PYTHONPATH": f"{GEARMAN3_DIR}{os.pathsep}{REPO_ROOT}"}
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, gearmand.address, "patch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["module"].startswith(str(GEARMAN3_DIR)), out["module"]
    assert out["before"] == "AttributeError: 'array.array' object has no attribute 'fromstring'"
    assert out["patched"] == [True, False]
    assert out["after"] == [["COMPLETE", "cba"], ["COMPLETE", "yxxxx"]], out["after"]
