"""The sdist and the wheel, as a team adopting the package would get them (issue 14).

One module-scoped build: ``python -m build --no-isolation`` over a copy of the tree (so the
tree gets no ``build/`` or ``*.egg-info``), with the setuptools and build of this venv: no
network. Without ``--sdist``/``--wheel`` it builds the sdist, then the wheel from the sdist, so
a file the sdist lacks shows up as a wheel that lacks it. The wheel is then installed into a
clean venv (no pip in it, no site-packages of ours) with wrapt copied from this interpreter, so
installing needs no network either, and the installed package is imported and run from there
(``-E -s``, in a folder that is not the tree).

Runs in the pytest process (the build and the clean venv are child processes, each waited for
with a timeout).
"""

from __future__ import annotations

import email.parser
import importlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

import safeclients

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs tomli there
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The one place the version is written (pyproject.toml reads it: dynamic = ["version"]).
VERSION = safeclients.__version__
TIMEOUT = 240.0  # seconds for one build or install step, on a shared 2-core machine

# What `python -m build` must not copy from the tree (caches, the venv, earlier outputs).
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "site",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    ".runs",
)


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    log: str


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("dist")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE, symlinks=True)
    out = work / "out"
    done = _run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--outdir",
            str(out),
            str(src),
        ],
        cwd=work,
    )
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, (
        f"expected one wheel and one sdist: {wheels} {sdists}"
    )
    return Built(wheels[0], sdists[0], done.stdout + done.stderr)


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_build_prints_no_deprecation_warning(built: Built) -> None:
    warnings = [line for line in built.log.splitlines() if "eprecat" in line]
    assert warnings == [], "the build warned:\n" + "\n".join(warnings)


def test_wheel_holds_the_library_and_nothing_else(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as archive:
        names = set(archive.namelist())
    version = VERSION
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"safeclients", f"safeclients-{version}.dist-info"}, (
        f"the wheel installs more than the library (server/, tests/, ...?): {sorted(top)}"
    )
    library = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "safeclients").rglob("*")
        if path.suffix in {".py", ".typed"} and "__pycache__" not in path.parts
    }
    missing = sorted(library - names)
    assert missing == [], f"library files missing from the wheel: {missing}"
    # The proving ground: the repository's server/ inside the safeclients namespace.
    server = {f"safeclients/server/{path.name}" for path in (ROOT / "server").glob("*.py")}
    missing = sorted(server - names)
    assert missing == [], f"server/ files missing from the wheel as safeclients.server: {missing}"
    assert "safeclients/py.typed" in names
    assert f"safeclients-{version}.dist-info/licenses/LICENSE" in names


def test_wheel_metadata_matches_pyproject(built: Built) -> None:
    meta = _metadata(built.wheel)
    assert meta["Name"] == "safeclients"
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    assert meta["Requires-Python"] == PYPROJECT["requires-python"]
    runtime = [req for req in meta.get_all("Requires-Dist") or [] if "extra ==" not in req]
    assert runtime == PYPROJECT["dependencies"], f"Requires-Dist without extras: {runtime}"
    # pip install 'safeclients[server]' brings what the proving ground needs.
    server = [req for req in meta.get_all("Requires-Dist") or [] if 'extra == "server"' in req]
    assert [req.split(";")[0].strip() for req in server] == PYPROJECT["optional-dependencies"][
        "server"
    ], server


def test_wheel_registers_the_pytest_plugin(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
        text = archive.read(name).decode()
    assert "[pytest11]\nsafeclients = safeclients.pytest_plugin" in text, text


def test_sdist_holds_the_library_license_and_readme(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "LICENSE",
        "README.md",
        "pyproject.toml",
        "safeclients/__init__.py",
        "safeclients/py.typed",
    ):
        assert needed in names, f"{needed} missing from the sdist"


def test_twine_check_passes(built: Built) -> None:
    done = _run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built.wheel), str(built.sdist)],
        cwd=built.wheel.parent,
    )
    assert done.stdout.count("PASSED") == 2, done.stdout


def _clean_venv(built: Built, tmp_path: Path, packages: tuple[str, ...] = ("wrapt",)) -> Path:
    """A venv without pip or our site-packages, with ``packages`` copied from this interpreter
    (same Python: no network) and the wheel installed; returns its python."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            cwd=tmp_path,
        ).stdout.strip()
    )
    for package in packages:
        module = importlib.import_module(package)
        assert module.__file__ is not None
        package_dir = Path(module.__file__).parent
        shutil.copytree(package_dir, site / package)
        version = importlib.metadata.version(package)
        infos = list(package_dir.parent.glob(f"{package}-{version}.dist-info"))
        assert len(infos) == 1, f"{package} {version}'s dist-info not found beside {package_dir}"
        shutil.copytree(infos[0], site / infos[0].name)
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    _run(
        [*pip, "install", "--no-deps", "--no-index", "--no-cache-dir", str(built.wheel)],
        cwd=tmp_path,
    )
    _run([*pip, "check"], cwd=tmp_path)  # the wheel's Requires-Dist is met by the copies
    return python


def test_installed_wheel_imports_and_runs_in_a_clean_venv(built: Built, tmp_path: Path) -> None:
    python = _clean_venv(built, tmp_path)
    site = python.parent.parent
    (tmp_path / "app.py").write_text(
        textwrap.dedent("""\
        import sqlite3
        import safeclients

        shared = sqlite3.connect(":memory:", check_same_thread=False)

        @safeclients.per_thread
        def fixed() -> sqlite3.Connection:
            return sqlite3.connect(":memory:")
    """)
    )
    probe = textwrap.dedent("""\
        import importlib.util, sys, safeclients
        print(safeclients.__file__)
        print(importlib.util.find_spec("server") is None)
        from app import fixed
        print(fixed.execute("select 41 + 1").fetchone()[0], safeclients.policy_name(fixed))
    """)
    # -E -s: no PYTHONPATH, no user site; -c and -m put the cwd (tmp_path: app.py) first, and
    # the tree is nowhere on the path.
    lines = _run([str(python), "-E", "-s", "-c", probe], cwd=tmp_path).stdout.split()
    assert Path(lines[0]).is_relative_to(site), f"imported from {lines[0]}, not the clean venv"
    assert lines[1] == "True", "a top-level `server` package is importable from the clean venv"
    assert lines[2:] == ["42", "per_thread"], lines

    audit = subprocess.run(
        [str(python), "-E", "-s", "-m", "safeclients", "audit", "app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert audit.returncode == 1, f"audit exited {audit.returncode}:\n{audit.stdout}{audit.stderr}"
    assert "app.shared" in audit.stdout and "app.fixed" in audit.stdout, audit.stdout


def test_installed_wheel_proves_an_app_outside_the_repository(built: Built, tmp_path: Path) -> None:
    # What `pip install 'safeclients[server]'` gives: the wheel and httptools.
    python = _clean_venv(built, tmp_path, ("wrapt", "httptools"))
    (tmp_path / "shop.py").write_text(
        textwrap.dedent("""\
        import sqlite3

        db = sqlite3.connect(":memory:", check_same_thread=False)

        def app(environ, start_response):
            db.execute("select 1").fetchall()
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
    """)
    )
    (tmp_path / "shop_fixed.py").write_text(
        textwrap.dedent("""\
        import sqlite3
        import safeclients

        @safeclients.per_thread
        def db() -> sqlite3.Connection:
            return sqlite3.connect(":memory:")

        def app(environ, start_response):
            db.execute("select 1").fetchall()
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
    """)
    )

    def prove(app: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), "-E", "-s", "-m", "safeclients", "prove", app, "--requests", "40"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    unsafe = prove("shop:app")
    assert unsafe.returncode == 1, (
        f"prove exited {unsafe.returncode}:\n{unsafe.stdout}{unsafe.stderr}"
    )
    assert "UNSAFE  shop.db (sqlite3.Connection)" in unsafe.stdout, unsafe.stdout
    assert "responses: 200: 40" in unsafe.stdout, unsafe.stdout
    fixed = prove("shop_fixed:app")
    assert fixed.returncode == 0, f"prove exited {fixed.returncode}:\n{fixed.stdout}{fixed.stderr}"
    assert "0 unsafe uses seen" in fixed.stdout, fixed.stdout


def test_changelog_starts_with_this_release() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    first = re.search(r"(?m)^## (\S+)", changelog)
    assert first is not None, "CHANGELOG.md has no release heading ('## X.Y.Z (date)')"
    assert first[1] == VERSION, (
        f"CHANGELOG.md starts with {first[1]}, pyproject.toml says {VERSION}"
    )


def test_every_runtime_dependency_declares_the_minimum_that_ci_installs() -> None:
    # scripts/min_versions.sh pins each `name>=X` at `name==X`: a dependency without a lower
    # bound would go untested there.
    for dependency in PYPROJECT["dependencies"]:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+>=[0-9][0-9A-Za-z.]*(,.*)?", dependency), (
            f"dependency {dependency!r} declares no lower bound ('name>=X')"
        )
