"""Fixtures of the library's unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from safeclients import _proxy


@pytest.fixture(params=["forwarder", "generic"])
def call_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once over the fast forwarders and once over the generic ``__getattr__`` path
    (``Policy.call``); both are compiled from the policy's one ``Use``."""
    monkeypatch.setattr(_proxy, "FORWARDERS", request.param == "forwarder")
    return str(request.param)


@pytest.fixture
def session_profile() -> Iterator[None]:
    """Registers a profile for ``tests.lib.test_disconnect.Session`` whose disconnect judgement
    reads the session's ``open`` flag (as PyMySQL's)."""
    from safeclients import profiles
    from tests.lib.test_disconnect import Session, judge

    name = f"{Session.__module__}.{Session.__qualname__}"
    profiles.register(
        profiles.Profile(
            qualname=name, reason="test", suggest="pooled", sources=(), disconnect=judge
        )
    )
    try:
        yield
    finally:
        profiles.unregister(name)
