"""The docs site's configuration: a strict build, and one source for the README and the docs.

The build is strict: a broken link, anchor, API reference or include fails it. CI builds the
real site (``scripts/docs.sh``); these tests build a copy of it with one broken reference added,
and check that the build refuses it and names it. They build without ``--strict``
(``scripts/docs.sh`` passes it too), so a ``mkdocs.yml`` that quietly drops ``strict: true`` or
a link validation fails here. Each build is a child process of the pytest process, with a
timeout.

One source: the README's marked sections are each included by a docs page, every include
resolves, and no page repeats a passage of the README (or of another file it includes) by hand.
Those checks read the files (no build), and are themselves tried on small trees with each
mistake in them.
"""

from __future__ import annotations

import os
import re
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
    # mkdocs.yml, and every file the pages include (README.md, CHANGELOG.md, server/README.md).
    for name in ["mkdocs.yml", *sorted({path for _, path, _ in _includes(ROOT)})]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
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
        ('--8<-- "README.md:no-such-section"', "no-such-section"),
        ('--8<-- "no-such-file.md"', "no-such-file.md"),
    ],
    ids=["page", "anchor", "api-reference", "readme-section", "included-file"],
)
def test_a_broken_reference_fails_the_build(tmp_path: Path, broken_line: str, named: str) -> None:
    done = _build_with(tmp_path, broken_line)
    assert done.returncode != 0, f"the build accepted {broken_line!r}:\n{done.stderr}"
    assert named in done.stderr, f"the build failed without naming {named!r}:\n{done.stderr}"


# -- One source for README and docs ---------------------------------------------------------
#
# Text that README.md and the site share is written once, in README.md, between section markers
#     <!-- --8<-- [start:name] -->  ...  <!-- --8<-- [end:name] -->
# (HTML comments: invisible on GitHub), and a docs page includes it with the line
#     --8<-- "README.md:name"
# (pymdownx.snippets, mkdocs.yml; check_paths makes a missing file or section fail the build).
# The long text lives on its docs page only. These tests read the files, no build.

SECTION_MARK = re.compile(r"<!-- --8<-- \[(start|end):([a-z][-_0-9a-z]*)\] -->")
INCLUDE = re.compile(r'^--8<-- "([^":]+)(?::([a-z][-_0-9a-z]*))?"\s*$', re.M)
MIN_COPY = 60  # characters: a sentence, table row or code line this long is not a coincidence


def _readme_sections(root: Path) -> dict[str, str]:
    """README.md's marked sections, by name; a marker out of place fails the test."""
    text = (root / "README.md").read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    opened: dict[str, int] = {}
    for match in SECTION_MARK.finditer(text):
        kind, name = match.groups()
        if kind == "start":
            assert name not in opened and name not in sections, f"README section {name!r} twice"
            opened[name] = match.end()
        else:
            assert name in opened, f"README section {name!r} ends without a start"
            sections[name] = text[opened.pop(name) : match.start()]
    assert not opened, f"README sections without an end marker: {sorted(opened)}"
    return sections


def _includes(root: Path) -> list[tuple[str, str, str | None]]:
    """(page, included file, section or None) for every include line of docs/*.md."""
    found = []
    for page in sorted((root / "docs").glob("*.md")):
        for match in INCLUDE.finditer(page.read_text(encoding="utf-8")):
            found.append((page.name, match[1], match[2]))
    return found


def _fragments(text: str) -> list[str]:
    """Sentences of prose, and single lines of tables and code, whitespace collapsed."""
    pieces: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.splitlines() if not SECTION_MARK.search(line)]
        if any(line.lstrip().startswith(("|", "```", "    ")) for line in lines):
            pieces.extend(lines)
        else:
            pieces.extend(re.split(r"(?<=[.!?])\s+", " ".join(line.strip() for line in lines)))
    collapsed = (" ".join(piece.split()) for piece in pieces)
    return [piece for piece in collapsed if len(piece) >= MIN_COPY]


def _section_problems(root: Path) -> list[str]:
    sections = _readme_sections(root)
    problems = [] if sections else ["README.md marks no section for the site"]
    included: set[str] = set()
    for page, path, section in _includes(root):
        if not (root / path).is_file():
            problems.append(f"docs/{page} includes {path}, which does not exist")
        elif path == "README.md" and section is None:
            problems.append(f"docs/{page} includes all of README.md: name a section")
        elif path == "README.md" and section not in sections:
            problems.append(f"docs/{page} includes README.md:{section}, which is not marked")
        elif path == "README.md" and section is not None:
            if not sections[section].strip():
                problems.append(f"README.md section {section!r} is empty")
            included.add(section)
    problems += [
        f"README.md section {name!r} is on no docs page"
        for name in sorted(set(sections) - included)
    ]
    return problems


def _hand_copies(root: Path) -> list[str]:
    sources = {"README.md"} | {path for _, path, _ in _includes(root) if (root / path).is_file()}
    fragments = {s: _fragments((root / s).read_text(encoding="utf-8")) for s in sorted(sources)}
    copies = []
    for page in sorted((root / "docs").glob("*.md")):
        text = " ".join(page.read_text(encoding="utf-8").split())
        for source, pieces in fragments.items():
            copies += [
                f"docs/{page.name} repeats {source}: {p[:100]!r}" for p in pieces if p in text
            ]
    return copies


def test_every_readme_section_is_on_the_site_and_every_include_resolves() -> None:
    problems = _section_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_no_docs_page_copies_the_readme_by_hand() -> None:
    copies = _hand_copies(ROOT)
    assert not copies, (
        f"{len(copies)} passages of the docs are hand copies (include the source's section "
        "instead, or keep the text in one place):\n" + "\n".join(copies[:40])
    )


def _tree(tmp_path: Path, readme: str, page: str) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(readme, encoding="utf-8")
    (tmp_path / "docs" / "index.md").write_text(page, encoding="utf-8")
    return tmp_path


SHARED = (
    "# x\n\n<!-- --8<-- [start:intro] -->\nA sentence long enough to be more than a coincidence "
    "when it shows up twice.\n<!-- --8<-- [end:intro] -->\n\nREADME-only text, also long enough "
    "to count as a copy when a page repeats it.\n"
)


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ('--8<-- "README.md:intro"\n', []),
        ("Nothing included.\n", ["README.md section 'intro' is on no docs page"]),
        (
            '--8<-- "README.md:intro"\n--8<-- "README.md:outro"\n',
            ["docs/index.md includes README.md:outro, which is not marked"],
        ),
        (
            '--8<-- "README.md"\n',
            [
                "docs/index.md includes all of README.md: name a section",
                "README.md section 'intro' is on no docs page",
            ],
        ),
    ],
    ids=["included", "orphan", "unknown-section", "whole-readme"],
)
def test_the_section_check_sees_each_mistake(
    tmp_path: Path, page: str, expected: list[str]
) -> None:
    assert _section_problems(_tree(tmp_path, SHARED, page)) == expected


@pytest.mark.parametrize(
    ("page", "copied"),
    [
        ('--8<-- "README.md:intro"\n', 0),
        (
            '--8<-- "README.md:intro"\n\nREADME-only text, also long enough to count as a\ncopy '
            "when a page repeats it.\n",
            1,
        ),
        ("A sentence long enough to be more than a coincidence when it shows up twice.\n", 1),
    ],
    ids=["included", "readme-only-text-copied", "shared-text-copied-not-included"],
)
def test_the_copy_check_sees_a_hand_copy(tmp_path: Path, page: str, copied: int) -> None:
    copies = _hand_copies(_tree(tmp_path, SHARED, page))
    assert len(copies) == copied, copies
