"""http.client.HTTPConnection shared by 16 threads, against our own server."""

from __future__ import annotations

import pytest

from examples.clients import http_keepalive
from examples.clients.hammer import SAFE_POLICIES
from server.testing import ServerProcess
from tests.clients.support import assert_clean, until_trap

pytestmark = pytest.mark.integration

TRAP_TIMEOUT = 1.0
OPS = 30


def test_unwrapped_connection_fails(echo_server: ServerProcess) -> None:
    until_trap(
        lambda: http_keepalive.run(
            "unsafe", echo_server.url, ops=OPS, timeout=TRAP_TIMEOUT, deadline=15.0
        ),
        lambda t: t.failures > 0,
        "CannotSendRequest, ResponseNotReady or a wrong body",
    )


def test_detector_counts_the_overlap(echo_server: ServerProcess) -> None:
    until_trap(
        lambda: http_keepalive.run(
            "guarded", echo_server.url, ops=OPS, timeout=TRAP_TIMEOUT, deadline=15.0
        ),
        lambda t: t.conflicts > 0,
        "a conflict counted by guarded()",
    )


@pytest.mark.parametrize("policy", SAFE_POLICIES)
def test_policy_has_no_failures(echo_server: ServerProcess, checking: None, policy: str) -> None:
    tally = http_keepalive.run(policy, echo_server.url, ops=OPS)
    assert_clean(policy, tally, OPS)
