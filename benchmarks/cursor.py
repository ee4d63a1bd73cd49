"""The DB-API cursor cycle on real sqlite3, raw and through each policy (issue 22).

A cursor is a use that outlives the call that made it: ``db.cursor()`` returns, and the cursor
keeps its connection (pooled's checkout, locked's lock) until it is closed. This section times
what that costs per cycle, on a ``:memory:`` database with a small table:

* ``cur = db.cursor(); cur.execute(q); cur.fetchall(); cur.close()``;
* ``for row in db.execute(q): pass`` (the connection's shortcut: the cursor is only iterated,
  then dropped);
* ``with checkout(db) as c:`` around the first cycle, on ``c`` (one instance for the block).

``db`` is the raw connection, or a ``per_thread``, ``locked`` or ``pooled`` proxy of a factory
returning one (``check_same_thread=False`` for ``locked`` and ``pooled``, which may hand the
connection to another thread; ``per_thread`` never does). Every row of one wrapt mode is
measured in one process, in interleaved rounds (``harness.measure_interleaved``, as the
per-call table); the table gives the median and the minimum ns per cycle and the ratio of the
medians to the raw connection's row of the same form. Only the public API is used, so the
section measures whatever the library's current design does.

``python -m benchmarks.cursor --number N --repeats R`` is the child of one wrapt mode (it
prints JSON); ``python -m benchmarks --only cursor`` runs both modes and prints the table.
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Any

from benchmarks.harness import Case, Namespace
from benchmarks.micro import child_main, measure_cases
from benchmarks.report import table

ROWS = 10
QUERY = "SELECT id, name, score FROM items ORDER BY id"

CYCLE = "cur = db.cursor(); cur.execute(q); cur.fetchall(); cur.close()"
ITERATE = "for row in db.execute(q):\n    pass"
CHECKOUT = "with checkout(db) as c:\n    " + CYCLE.replace("db.", "c.")

#: The forms of use, in table order: form -> (statement, the raw row it is compared with).
#: The checkout form has no raw row of its own: a raw connection needs no checkout.
FORMS = {
    "cycle": (CYCLE, "raw_cycle"),
    "iterate": (ITERATE, "raw_iterate"),
    "checkout": (CHECKOUT, "raw_cycle"),
}
LABELS = {
    "cycle": "`cur = db.cursor(); cur.execute(q); cur.fetchall(); cur.close()`",
    "iterate": "`for row in db.execute(q): pass`",
    "checkout": "`with checkout(db) as c:` + the cycle on `c`",
}
POLICIES = ("per_thread", "locked", "pooled")


def connect(*, check_same_thread: bool = True) -> sqlite3.Connection:
    """A new ``:memory:`` database (one per connection) holding the small table."""
    db = sqlite3.connect(":memory:", check_same_thread=check_same_thread)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)")
    db.executemany(
        "INSERT INTO items VALUES (?, ?, ?)", [(n, f"item-{n}", n / 4) for n in range(ROWS)]
    )
    db.commit()
    return db


def thread_connection() -> sqlite3.Connection:
    """per_thread's factory: the connection stays in the thread that made it."""
    return connect()


def shared_connection() -> sqlite3.Connection:
    """locked's and pooled's factory: the connection may be used from any thread."""
    return connect(check_same_thread=False)


def _checked(db: Any) -> Any:
    # A row that times a wrong answer would be worse than a skipped one: the harness only
    # checks that the statement runs.
    rows = db.execute(QUERY).fetchall()
    if len(rows) != ROWS or tuple(rows[1]) != (1, "item-1", 0.25):
        raise RuntimeError(f"the query through {db!r} returned {rows!r}")
    return db


def _raw() -> Namespace:
    return {"db": _checked(connect()), "q": QUERY}


def _proxied(policy: str) -> Namespace:
    import safeclients

    make: Any = getattr(safeclients, policy)
    factory = thread_connection if policy == "per_thread" else shared_connection
    return {"db": _checked(make(factory)), "q": QUERY, "checkout": safeclients.checkout}


def _close_raw(namespace: Namespace) -> None:
    namespace["db"].close()


def _dispose(namespace: Namespace) -> None:
    import safeclients

    safeclients.dispose(namespace["db"], final=True)


def cursor_cases() -> list[Case]:
    """Each form raw (where it has a raw row), then through each policy."""
    cases = []
    for form, (stmt, anchor) in FORMS.items():
        if anchor == f"raw_{form}":
            cases.append(Case(anchor, "raw", stmt, _raw, teardown=_close_raw))
        for policy in POLICIES:
            setup = functools.partial(_proxied, policy)
            key = f"{policy}_{form}"
            cases.append(Case(key, policy, stmt, setup, baseline=anchor, teardown=_dispose))
    return cases


def measure(number: int, repeats: int) -> dict[str, Any]:
    """Every row in this process (its wrapt mode); a JSON-able dict."""
    return measure_cases(cursor_cases(), number=number, repeats=repeats)


def _form(key: str) -> str:
    return key.rsplit("_", 1)[1]  # keys are "<client>_<form>"


def _cells(row: dict[str, Any], rows: dict[str, dict[str, Any]]) -> list[str]:
    if "median" not in row:
        return ["n/a", "—"]
    anchor = rows.get(row["baseline"] or row["key"], {})
    ratio = f"{row['median'] / anchor['median']:.2f}" if "median" in anchor else "—"
    return [f"{row['median']:,.0f} ({row['min']:,.0f})", ratio]


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """One table, a column pair per wrapt mode; skipped rows say why below it."""
    modes = list(results)
    by_mode = {mode: {row["key"]: row for row in results[mode]["rows"]} for mode in modes}
    header = ["form", "client"]
    for mode in modes:
        header += [f"{mode}: ns/cycle median (min)", f"{mode}: x raw"]
    lines: list[list[str]] = []
    skipped: list[str] = []
    previous = ""
    for first_row in results[modes[0]]["rows"]:
        key = first_row["key"]
        form = _form(key)
        cells = [LABELS[form] if form != previous else "", first_row["label"]]
        previous = form
        for mode in modes:
            row = by_mode[mode][key]
            cells += _cells(row, by_mode[mode])
            if "skipped" in row:
                skipped.append(f"- {LABELS[form]} via {row['label']} ({mode}): {row['skipped']}")
        lines.append(cells)
    first = results[modes[0]]
    parts = [
        "### Cursor cycle on sqlite3 (one thread)",
        "",
        f"A `:memory:` database, a {ROWS}-row table, `q = {QUERY!r}`. "
        f"{first['number']:,} cycles per sample, {first['repeats']} interleaved rounds; "
        "x raw is the ratio of the medians to the raw connection's row of the same form (the "
        "`checkout` rows: to the raw cycle).",
        "",
        table(header, lines),
    ]
    if skipped:
        parts += ["", "Skipped rows:", *skipped]
    return "\n".join(parts)


def main() -> None:
    child_main(measure, __doc__ or "", number=3_000, repeats=15)


if __name__ == "__main__":
    main()
