"""Fixtures for the client tests: our server running the echo app, and the check switch.

The echo server is one per module (starting it costs about a second); memcached is the session
fixture from examples/support/memcached.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.testing import ServerProcess


@pytest.fixture(scope="module")
def echo_server() -> Iterator[ServerProcess]:
    """``python -m server examples.clients.echo_app:application``, 2 workers x 8 threads."""
    with ServerProcess("examples.clients.echo_app:application", workers=2, threads=8) as srv:
        yield srv


@pytest.fixture
def checking(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAFECLIENTS_CHECK=1 for proxies created in this test: a policy that ever hands one
    instance to two threads at once raises ConcurrentUseError instead of passing quietly."""
    monkeypatch.setenv("SAFECLIENTS_CHECK", "1")
