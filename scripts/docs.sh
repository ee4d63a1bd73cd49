#!/usr/bin/env bash
# Build the documentation site (mkdocs.yml: MkDocs + Material + mkdocstrings) in strict mode:
# a broken link, a missing anchor or an unresolved API reference fails the build. CI runs this
# from scripts/test.sh.
#   scripts/docs.sh              build into a temporary folder, then remove it (the check)
#   scripts/docs.sh site/        build into site/ (to read or publish)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=${1:-}
keep=1
if [ -z "$out" ]; then
    keep=0
    out=$(mktemp -d "${TMPDIR:-/tmp}/safeclients-site.XXXXXX")
    trap 'rm -rf "$out"' EXIT
fi
# NO_MKDOCS_2_WARNING: Material prints a banner about MkDocs 2 on every build.
NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --quiet --site-dir "$out"
pages=$(find "$out" -name '*.html' | wc -l)
if [ "$keep" = 1 ]; then
    echo "docs: built $pages pages (strict) into $out"
else
    echo "docs: built $pages pages (strict); a check only, nothing kept (scripts/docs.sh site/ keeps the site)"
fi
