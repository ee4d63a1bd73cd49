"""Functions for ``hammer`` tests: one over a shared global client, one over a fixed one."""

import sqlite3

import safeclients
from tests.prove.apps._fake import MeetingClient

shared = MeetingClient()


@safeclients.per_thread
def fixed() -> sqlite3.Connection:
    return sqlite3.connect(":memory:")


def handler() -> int:
    return shared.call()


def fixed_handler() -> int:
    row = fixed.execute("select 41 + 1").fetchone()
    return int(row[0])
