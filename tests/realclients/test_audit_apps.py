"""The audit on the real-client apps (issue 11) and the ASGI apps (issue 24): each unsafe global
is flagged with its profile's reason and its open connection (where its profile can describe
one); each wrapped one is listed as safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.asgi._asgi import FORM_ENV
from examples.asgi.prove import CLIENTS as ASGI_CLIENTS
from examples.realclients.prove import CLIENTS
from examples.realclients.targets import Target
from tests.realclients.test_asgi import FIXTURE as ASGI_FIXTURE
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
    return _run_audit(
        spec.app.split(":")[0],
        {spec.url_env: backend.url, "SAFECLIENTS_EXAMPLE_POLICY": policy},
    )


def _run_audit(module: str, app_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m safeclients audit module`` with the app's environment, in a child."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **app_env}
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


# The ASGI apps (examples/asgi): what each unwrapped global's profile says, and whether its
# profile can describe the connection the import-time warm-up opened.
ASGI_REASON_WORDS = {"redis": "Event loop is closed", "asyncpg": "one coroutine at a time"}
ASGI_PROBED = {"redis"}  # asyncpg's Connection has no probe


@pytest.mark.parametrize("client", sorted(ASGI_CLIENTS))
def test_the_audit_flags_each_unwrapped_asgi_global(
    client: str, request: pytest.FixtureRequest
) -> None:
    spec = ASGI_CLIENTS[client]
    backend: Target = request.getfixturevalue(ASGI_FIXTURE[spec.backend])
    module, env = spec.app.split(":")[0], {spec.url_env: backend.url}
    unwrapped = _run_audit(module, {**env, FORM_ENV: "unwrapped"})
    assert unwrapped.returncode == 1, unwrapped.stdout + unwrapped.stderr
    assert "UNSAFE" in unwrapped.stdout, unwrapped.stdout
    assert ASGI_REASON_WORDS[client] in " ".join(unwrapped.stdout.split()), unwrapped.stdout
    suggested = {"redis": "per_loop", "asyncpg": "pooled"}[client]  # asyncpg: a task, a connection
    assert f"safeclients.{suggested}(factory)" in unwrapped.stdout, unwrapped.stdout
    if client in ASGI_PROBED:
        assert "OPEN connection" in unwrapped.stdout, "the warm-up connected at import: say so"
    wrapped = _run_audit(module, {**env, FORM_ENV: "pooled"})
    assert wrapped.returncode == 0, wrapped.stdout + wrapped.stderr
    assert "already wrapped by safeclients.pooled" in wrapped.stdout
