"""The real-client apps' shared WSGI plumbing, called in-process (no sockets, no backend).

Table-driven: bad input is a 400 that says what was expected, a driver error a 503, any other
exception a 500, a good answer echoes the request's ``n`` and ``token``; an unknown policy in
the environment is refused with a named error before the app is built.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from examples.realclients._wsgi import (
    POLICY_ENV,
    MissingBackendUrl,
    UnknownPolicy,
    env_url,
    make_application,
    policy_from_env,
)


class DriverDown(Exception):
    """Stands in for a driver's own error class (``backend_errors``)."""


def handle(n: int, token: str) -> str:
    if token == "down":
        raise DriverDown("connection refused")
    if token == "corrupt":
        raise IndexError("pop from empty list")
    return f"echo-{n}-{token}"


APP = make_application(handle, client=object(), policy="unsafe", backend_errors=(DriverDown,))


def call(path: str, query: str) -> tuple[str, dict[str, Any]]:
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.append(status)

    body = b"".join(APP({"PATH_INFO": path, "QUERY_STRING": query}, start_response))
    return seen[0], json.loads(body)


@pytest.mark.parametrize(
    ("path", "query", "status", "field", "value"),
    [
        ("/item", "n=3&token=abc", "200 OK", "echo", "echo-3-abc"),
        ("/item", "n=3&token=abc", "200 OK", "token", "abc"),
        ("/item", "n=3", "400 Bad Request", "error", "need ?n=<digits>&token=<text>; got n='3'"),
        (
            "/item",
            "token=abc",
            "400 Bad Request",
            "error",
            "need ?n=<digits>&token=<text>; got n=''",
        ),
        (
            "/item",
            "n=-1&token=abc",
            "400 Bad Request",
            "error",
            "need ?n=<digits>&token=<text>; got n='-1'",
        ),
        (
            "/item",
            "n=3&token=down",
            "503 Service Unavailable",
            "error",
            "DriverDown: connection refused",
        ),
        (
            "/item",
            "n=3&token=corrupt",
            "500 Internal Server Error",
            "error",
            "IndexError: pop from empty list",
        ),
        ("/nope", "", "404 Not Found", "error", "no route /nope"),
        ("/stats", "", "200 OK", "stats", None),  # not a proxy: no stats
    ],
)
def test_routes(path: str, query: str, status: str, field: str, value: object) -> None:
    got_status, body = call(path, query)
    assert (got_status, body[field]) == (status, value)


def test_unknown_policy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLICY_ENV, "per_request")
    with pytest.raises(UnknownPolicy, match="'per_request' is not one of unsafe, per_thread"):
        policy_from_env()


def test_missing_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(MissingBackendUrl, match="set DATABASE_URL to the backend's URL"):
        env_url("DATABASE_URL")
