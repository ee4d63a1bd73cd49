"""The proxy module (``safeclients/_proxy.py``): what importing it says under a wrapt 1.x.

pyproject.toml requires ``wrapt>=2.0.0`` and pip enforces it, but a wrapt 1.x still ends up
installed with ``pip install --no-deps``, or when a project pins ``wrapt<2`` after installing
us (pip then only warns). Importing safeclients must then say what is wrong and what to do.
The wrapt 1.x here is a stand-in module on ``sys.path`` (1.x has ``ObjectProxy`` but no
``BaseObjectProxy``), imported in a child process with a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_under_wrapt_1_names_the_version_and_the_fix(tmp_path: Path) -> None:
    fake = tmp_path / "wrapt"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        '__version__ = "1.17.3"\n\nclass ObjectProxy:\n    pass\n', encoding="utf-8"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import safeclients"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, "safeclients imported under a wrapt without BaseObjectProxy"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: safeclients needs wrapt >= 2.0.0"), done.stderr
    assert "wrapt 1.17.3" in last and "pip install 'wrapt>=2.0.0'" in last, last
