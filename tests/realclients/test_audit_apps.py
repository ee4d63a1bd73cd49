"""The audit on the real-client apps (issue 11): each unsafe global is flagged with its profile's
reason and its open connection (where its profile can describe one); each wrapped one is listed
as safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.realclients.prove import CLIENTS
from examples.realclients.targets import Target
from tests.realclients.test_proof import FIXTURE

REPO_ROOT = Path(__file__).resolve().parents[2]
AUDIT_TIMEOUT = 60.0

# What each client's profile says (safeclients/_profile_table.py), as the audit prints it.
REASON_WORDS = {
    "pymysql": "threadsafety",
    "mysqlclient": "threadsafety",
    "psycopg2": "transaction",
    "psycopg": "transaction",
    "pika": "thread",
    "redis": "fork",
    "smtplib": "session",
    "ftplib": "session",
    "pymemcache": "socket",
    "paho-mqtt": "network thread",
    "grpc": "fork",
}
#: Clients whose profile cannot describe an open connection (no probe: a gRPC channel's
#: connections live in gRPC core).
NO_PROBE = {"grpc"}


def _audit(client: str, policy: str, backend: Target) -> subprocess.CompletedProcess[str]:
    spec = CLIENTS[client]
    module = spec.app.split(":")[0]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        spec.url_env: backend.url,
        "SAFECLIENTS_EXAMPLE_POLICY": policy,
    }
    return subprocess.run(
        [sys.executable, "-m", "safeclients", "audit", module],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=AUDIT_TIMEOUT,
    )


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_the_audit_flags_each_unsafe_global_with_its_profile(
    client: str, request: pytest.FixtureRequest
) -> None:
    backend: Target = request.getfixturevalue(FIXTURE[CLIENTS[client].backend])
    unsafe = _audit(client, "unsafe", backend)
    assert unsafe.returncode == 1, unsafe.stdout + unsafe.stderr
    assert "UNSAFE" in unsafe.stdout and REASON_WORDS[client] in unsafe.stdout, unsafe.stdout
    if client not in NO_PROBE:
        assert "OPEN connection" in unsafe.stdout, "the app connects at import: say so"
    wrapped = _audit(client, "pooled", backend)
    assert wrapped.returncode == 0, wrapped.stdout + wrapped.stderr
    assert "already wrapped by safeclients.pooled" in wrapped.stdout
