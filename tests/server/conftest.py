"""Fixtures for the server tests: one shared live server for the HTTP-behaviour tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.testing import ServerProcess

LIVE_ARGS = [
    "--header-timeout",
    "1.5",
    "--keepalive-timeout",
    "2",
    "--socket-timeout",
    "5",
    "--max-body",
    "100000",
    "--max-header-bytes",
    "8192",
    "--max-headers",
    "50",
    "--access-log",
    "--graceful-timeout",
    "5",
]


@pytest.fixture(scope="module")
def live() -> Iterator[ServerProcess]:
    """The router test app on 2 workers x 4 threads, with small limits and timeouts."""
    with ServerProcess("tests.server.apps:router", workers=2, threads=4, args=LIVE_ARGS) as srv:
        yield srv
