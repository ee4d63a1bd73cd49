"""sqlite3: one file database, transactions from 16 threads, committed or rolled back."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.clients import sqlite_ledger
from examples.clients.hammer import SAFE_POLICIES, Tally
from tests.clients.support import assert_clean, until_trap

OPS = 30


def test_unwrapped_connection_loses_and_leaks_rows(tmp_path: Path) -> None:
    def run() -> Tally:
        tally, ledger = sqlite_ledger.run("unsafe", str(tmp_path / "ledger.db"), ops=OPS)
        tally.wrong += ledger.wrong  # rows that are wrong in the file count as failures too
        return tally

    until_trap(run, lambda t: t.failures > 0, "a lost or leaked row or a sqlite3 error")


def test_detector_counts_the_overlap(tmp_path: Path) -> None:
    until_trap(
        lambda: sqlite_ledger.run("guarded", str(tmp_path / "ledger.db"), ops=OPS)[0],
        lambda t: t.conflicts > 0,
        "a conflict counted by guarded()",
    )


@pytest.mark.parametrize("policy", SAFE_POLICIES)
def test_policy_keeps_every_transaction(tmp_path: Path, checking: None, policy: str) -> None:
    tally, ledger = sqlite_ledger.run(policy, str(tmp_path / "ledger.db"), ops=OPS)
    assert_clean(policy, tally, OPS)
    assert (ledger.lost, ledger.leaked) == (0, 0), f"{policy}: {ledger}"
