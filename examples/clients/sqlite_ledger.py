"""sqlite3: a ledger written by 16 threads, half the transactions committed, half rolled back.

Each unit of work is one transaction: insert a row, read inside the transaction, then commit
(even op numbers) or roll back (odd ones). Afterwards the file must hold exactly the committed
rows. With one connection shared by every thread (``check_same_thread=False``), the transaction
belongs to the connection, not to the thread: one thread's rollback throws away rows that
another thread meant to commit ("lost"), and one thread's commit saves rows that another meant
to roll back ("leaked").

The database is a file in WAL mode with ``BEGIN IMMEDIATE`` transactions, so that separate
connections (per_thread, pooled) wait for each other's write lock instead of failing with
"database is locked". Under ``per_thread`` the connections keep ``check_same_thread=True``: if
safeclients ever handed one to another thread, sqlite3 itself would raise ProgrammingError.

    python -m examples.clients.sqlite_ledger /tmp/ledger.db [--policy all] [--threads 16]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
from dataclasses import dataclass

from examples.clients.hammer import POLICIES, Tally, build, hammer, observe, release, unit

BUSY_TIMEOUT = 60.0


def connect(path: str, *, check_same_thread: bool = False) -> sqlite3.Connection:
    return sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level="IMMEDIATE", check_same_thread=check_same_thread
    )


def create(path: str) -> None:
    """A fresh, empty ledger at ``path``."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    with connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE entries (thread INTEGER, op INTEGER)")
    conn.close()


def transaction(conn: sqlite3.Connection, thread: int, op: int) -> bool:
    """One unit of work; True when the transaction saw its own row."""
    conn.execute("INSERT INTO entries VALUES (?, ?)", (thread, op))
    (mine,) = conn.execute(
        "SELECT count(*) FROM entries WHERE thread = ? AND op = ?", (thread, op)
    ).fetchone()
    if op % 2 == 0:
        conn.commit()
    else:
        conn.rollback()
    return bool(mine == 1)


@dataclass
class Ledger:
    """The file's rows compared with the transactions the threads committed."""

    expected: int
    lost: int
    leaked: int

    @property
    def wrong(self) -> int:
        return self.lost + self.leaked


def check(path: str, threads: int, ops: int) -> Ledger:
    with connect(path) as conn:
        rows = set(conn.execute("SELECT thread, op FROM entries").fetchall())
    conn.close()
    expected = {(t, op) for t in range(threads) for op in range(ops) if op % 2 == 0}
    return Ledger(expected=len(expected), lost=len(expected - rows), leaked=len(rows - expected))


def run(policy: str, path: str, *, threads: int = 16, ops: int = 40) -> tuple[Tally, Ledger]:
    """Run the ledger under ``policy``; the Tally counts ops, the Ledger the file's rows."""
    create(path)
    client = build(policy, lambda: connect(path, check_same_thread=policy == "per_thread"))

    def work(thread: int, op: int) -> bool:
        with unit(policy, client) as conn:
            return transaction(conn, thread, op)

    try:
        tally = hammer(work, threads=threads, ops=ops)
        observe(policy, client, tally)
    finally:
        release(policy, client)
    return tally, check(path, threads, ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="database file (recreated)")
    parser.add_argument("--policy", default="all", choices=("all", *POLICIES))
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--ops", type=int, default=40)
    args = parser.parse_args()
    for policy in POLICIES if args.policy == "all" else (args.policy,):
        tally, ledger = run(policy, args.path, threads=args.threads, ops=args.ops)
        print(
            f"{policy:<11} {tally.summary()}; rows lost {ledger.lost}, leaked {ledger.leaked} "
            f"of {ledger.expected} committed"
        )
        for example in tally.examples[:2]:
            print(f"{'':<11} e.g. {example}")


if __name__ == "__main__":
    main()
