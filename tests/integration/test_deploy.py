"""The example deployments in ``examples/deploy/`` run as shipped (only the port swapped for a
free one) and serve a safeclients variant with zero failures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.load import run_load
from examples.realclients.load import run_checked_load
from examples.support.backends import Redis
from examples.support.servers import (
    ExternalServer,
    gunicorn_server,
    script_server,
    uwsgi_ini_server,
)

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "examples" / "deploy"
REQUESTS = 500


def _check(server: ExternalServer) -> None:
    with server as srv:
        result = run_load(srv.url, total=REQUESTS, concurrency=16, timeout=10.0)
        log = srv.log_text()
    assert result.ok == REQUESTS, f"{result.summary()} {result.examples}\n{log[-2000:]}"


def test_uwsgi_ini(gearman_env: dict[str, str]) -> None:
    _check(uwsgi_ini_server(DEPLOY / "uwsgi.ini", env=gearman_env))


@pytest.mark.parametrize("preload", [False, True])
def test_gunicorn_conf(preload: bool, gearman_env: dict[str, str]) -> None:
    _check(
        gunicorn_server(
            "examples.gearman.app_pooled:application",
            preload=preload,
            config=DEPLOY / "gunicorn.conf.py",
            env=gearman_env,
        )
    )


def test_server_sh(gearman_env: dict[str, str]) -> None:
    _check(
        script_server(
            ["bash", str(DEPLOY / "server.sh"), "examples.gearman.app_locked:application"],
            env=gearman_env,
        )
    )


@pytest.mark.parametrize("preload", [False, True])
def test_gunicorn_asgi_conf(preload: bool, redis_server: Redis) -> None:
    # The ASGI example (examples/asgi) under uvicorn's worker, its per_loop form.
    server = gunicorn_server(
        "examples.asgi.redis_app:application",
        preload=preload,
        config=DEPLOY / "gunicorn_asgi.conf.py",
        env={"REDIS_URL": redis_server.url, "SAFECLIENTS_EXAMPLE_FORM": "per_loop"},
    )
    with server as srv:
        tally = run_checked_load(
            srv.url, total=REQUESTS, concurrency=16, expect="token", timeout=10.0
        )
        log = srv.log_text()
    assert tally.ok == REQUESTS, f"{tally.summary()} {tally.examples}\n{log[-2000:]}"
