"""The real-client load driver's verdicts (a table, no sockets) and its bounds."""

from __future__ import annotations

import json

import pytest

from examples.realclients.load import classify, run_checked_load
from examples.support.backends.data import item_value


def _body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("status", "body", "expect", "verdict"),
    [
        (200, _body(n=7, token="t1", echo=item_value(7)), "row", "ok"),
        (200, _body(n=7, token="t1", echo=item_value(8)), "row", "wrong"),  # another request's row
        (200, _body(n=8, token="t1", echo=item_value(8)), "row", "wrong"),
        (200, _body(n=7, token="t2", echo=item_value(7)), "row", "wrong"),
        (200, _body(n=7, token="t1", echo="t1"), "token", "ok"),
        (200, _body(n=7, token="t1", echo="t9"), "token", "wrong"),  # another request's key/message
        (200, _body(n=7, token="t1", echo=""), "token", "wrong"),
        (200, b"<html>", "row", "wrong"),
        (200, b"[1, 2]", "row", "wrong"),
        (404, _body(error="no route"), "row", "wrong"),
        (500, _body(error="IndexError"), "row", "errors"),
        (503, _body(error="OperationalError"), "token", "errors"),
    ],
)
def test_classify(status: int, body: bytes, expect: str, verdict: str) -> None:
    assert classify(status, body, 7, "t1", expect)[0] == verdict


def test_refused_connections_are_errors_and_stop_early() -> None:
    # Port 1 on loopback: nothing listens there, every request is refused.
    tally = run_checked_load(
        "http://127.0.0.1:1", total=50, concurrency=2, expect="row", timeout=2.0, stop_after=5
    )
    assert tally.ok == 0 and tally.wrong == 0
    assert 5 <= tally.errors <= 6, tally.summary()  # 2 threads: at most one request in flight


@pytest.mark.parametrize(
    "kwargs",
    [
        {"total": 0, "concurrency": 1, "expect": "row"},
        {"total": 1, "concurrency": 0, "expect": "row"},
        {"total": 1, "concurrency": 1, "expect": "rows"},
        {"total": 1, "concurrency": 1, "expect": "row", "timeout": 0},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="need total"):
        run_checked_load("http://127.0.0.1:1", **kwargs)  # type: ignore[arg-type]
