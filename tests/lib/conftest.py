"""Fixtures of the library's unit tests."""

from __future__ import annotations

import pytest

from safeclients import _proxy


@pytest.fixture(params=["forwarder", "generic"])
def call_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once over the fast forwarders and once over the generic ``__getattr__`` path
    (``Policy.call``); both are compiled from the policy's one ``Use``."""
    monkeypatch.setattr(_proxy, "FORWARDERS", request.param == "forwarder")
    return str(request.param)
