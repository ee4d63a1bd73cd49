#!/usr/bin/env bash
# The minimum-versions job (scripts/test.sh runs it; issue 14): in a fresh virtualenv, on the
# lowest Python that requires-python admits, install every runtime dependency at exactly the
# lower bound that pyproject.toml declares (`wrapt>=2.1.0` -> `wrapt==2.1.0`), then run the
# library's tests (tests/lib) twice: with wrapt's C extension, and with
# WRAPT_DISABLE_EXTENSIONS=1 (pure-Python proxies). The test tools (pytest, ...) are not pinned:
# only the library's own dependencies are under test here.
#
#   scripts/min_versions.sh                      the declared minimums, on the lowest Python
#   scripts/min_versions.sh wrapt==2.0.1 ...     try other pins instead (to find a minimum)
#   PYTHON=/path/to/python scripts/min_versions.sh   choose the interpreter
#
# The lowest Python: `python3.X` on PATH or a pyenv build of it (/root/.pyenv/versions/3.X.*),
# where X is the minor version in requires-python; else python3, with a warning saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST_PY=${HOST_PYTHON:-.venv/bin/python}
[ -x "$HOST_PY" ] || HOST_PY=python3

# Read requires-python and the pins from pyproject.toml.
spec=$("$HOST_PY" - <<'EOF'
import re, sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the test extra installs tomli
    import tomli as tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
requires = project["requires-python"]
match = re.fullmatch(r">=\s*(\d+\.\d+)", requires)
if match is None:
    sys.exit(f"min_versions: requires-python {requires!r} is not of the form '>=X.Y'")
pins = []
for dep in project.get("dependencies", []):
    found = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(,.*)?", dep)
    if found is None:
        sys.exit(f"min_versions: dependency {dep!r} declares no lower bound ('name>=X')")
    pins.append(f"{found[1]}=={found[2]}")
# The conftest loads the daemon fixtures, which import the Gearman client: install the
# gearman extra's pin too (it is a test tool here, not a dependency under test).
tools = project.get("optional-dependencies", {}).get("gearman", [])
print(match[1], " ".join(pins), "|", " ".join(tools))
EOF
)
read -r min_python pins <<<"$spec"
tools="${pins#*| }"
pins="${pins%% |*}"
if [ $# -gt 0 ]; then pins="$*"; fi

if [ -z "${PYTHON:-}" ]; then
    PYTHON=$(command -v "python$min_python" 2>/dev/null || true)
    if [ -n "$PYTHON" ] && ! "$PYTHON" --version >/dev/null 2>&1; then PYTHON=""; fi  # pyenv shim
    if [ -z "$PYTHON" ]; then
        PYTHON=$(ls -d /root/.pyenv/versions/"$min_python".*/bin/python"$min_python" 2>/dev/null \
                 | sort -V | tail -n 1 || true)
    fi
    if [ -z "$PYTHON" ]; then
        PYTHON=python3
        echo "min_versions: WARNING: no Python $min_python here; using $($PYTHON --version)" >&2
    fi
fi

venv=$(mktemp -d "${TMPDIR:-/tmp}/safeclients-min.XXXXXX")
trap 'rm -rf "$venv"' EXIT
echo "== minimum versions: $($PYTHON --version) with $pins (fresh venv $venv)"
"$PYTHON" -m venv "$venv"
# (grep: this machine's pip configuration names a local index folder that may not exist.)
"$venv/bin/python" -m pip install -q --disable-pip-version-check $pins \
    pytest pytest-timeout hypothesis psutil mypy $tools \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
"$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -iE "^($(echo "$pins" | sed -E 's/==[^ ]*//g; s/ +/|/g')) " || true
"$venv/bin/python" - <<'EOF'
import inspect, wrapt
pure = inspect.isfunction(wrapt.BaseObjectProxy.__init__)  # a slot wrapper when it is C
print(f"min_versions: wrapt {wrapt.__version__} imports; its proxy is", "pure Python" if pure else "C")
EOF

WRAPT_DISABLE_EXTENSIONS=1 "$venv/bin/python" -c 'import inspect, wrapt
assert inspect.isfunction(wrapt.BaseObjectProxy.__init__), "WRAPT_DISABLE_EXTENSIONS=1 ignored"'

# -p no:cacheprovider: leave the tree's .pytest_cache to the main run. MIN_KEEP_GOING=1: run
# the second mode even when the first fails (to survey candidate versions).
status=0
echo "== minimum versions: pytest tests/lib (wrapt C extension)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/lib -m "not soak" || status=$?
[ "$status" = 0 ] || [ "${MIN_KEEP_GOING:-}" = 1 ] || exit "$status"
echo "== minimum versions: pytest tests/lib (WRAPT_DISABLE_EXTENSIONS=1)"
WRAPT_DISABLE_EXTENSIONS=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/lib \
    -m "not soak" || status=$?
exit "$status"
