"""The Gearman trap under gevent servers, with real gearmand: uWSGI ``--gevent 100
--gevent-monkey-patch`` and gunicorn ``-k gevent`` (with and without ``--preload``), 2 workers
each, driven at concurrency 200 with a bounded number of checked requests.

The app is imported in the master before any patch (uWSGI's default loading, gunicorn
``--preload``) or in each worker after the patch (plain gunicorn ``-k gevent``): so the proxies
are made before the patch in an unpatched master that forks, or after it. Each worker runs every
request in its own greenlet. The unsafe global client fails; ``locked`` and ``pooled`` give 0
wrong results and 0 errors; the gearmand connections each policy holds are counted with
gearmand's ``workers`` admin command while the server is still up, after the load.

    pytest tests/green/test_gevent_servers.py -s     # prints the table rows
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from examples.load import LoadResult, run_load
from examples.support.gearmand import Gearmand, Workers
from examples.support.servers import BIN, ExternalServer, gunicorn_server

pytestmark = pytest.mark.integration
pytest.importorskip("gevent")

WORKERS = 2
GREENLETS = 100
REQUESTS = 2000
CONCURRENCY = 200
TRAP_REQUESTS = 1000
TRAP_ATTEMPTS = 3
TRAP_JOB_TIMEOUT = "2"
KINDS = ("uwsgi-gevent", "gunicorn-gevent", "gunicorn-gevent-preload")


def gevent_server(kind: str, app: str, env: Mapping[str, str]) -> ExternalServer:
    """A real uWSGI or gunicorn running gevent workers on 127.0.0.1, port 0."""
    if kind == "uwsgi-gevent":
        module, _, name = app.partition(":")
        command = [
            str(BIN / "uwsgi"),
            "--master",
            "--processes",
            str(WORKERS),
            "--gevent",
            str(GREENLETS),
            "--gevent-monkey-patch",
            "--http-socket",
            "127.0.0.1:0",
            "--module",
            f"{module}:{name}",
            "--need-app",
            "--die-on-term",
            "--disable-logging",
            "--listen",
            "1024",
            "--add-header",
            "Connection: close",
        ]
        return ExternalServer(
            "uwsgi",
            command,
            port_pattern=r"bound to TCP address [\d.]+:(\d+)",
            worker_pattern=r"spawned uWSGI worker \d+",
            workers=WORKERS,
            env=env,
        )
    return gunicorn_server(
        app,
        workers=WORKERS,
        worker_class="gevent",
        preload=kind == "gunicorn-gevent-preload",
        env=env,
        args=["--worker-connections", "1000", "--backlog", "1024"],
    )


@pytest.fixture
def gearman_env(gearmand: Gearmand, gearman_workers: Workers) -> dict[str, str]:
    gearmand.start()
    gearman_workers.ensure()
    return {"GEARMAN_SERVERS": gearmand.address, "GEARMAN_JOB_TIMEOUT": "10"}


def _describe(result: LoadResult) -> str:
    return result.summary() + "".join(f"\n  e.g. {e}" for e in result.examples)


@pytest.mark.parametrize("kind", KINDS)
def test_unsafe_global_client_fails_under_gevent(kind: str, gearman_env: dict[str, str]) -> None:
    env = {**gearman_env, "GEARMAN_JOB_TIMEOUT": TRAP_JOB_TIMEOUT}
    runs = []
    for _ in range(TRAP_ATTEMPTS):
        with gevent_server(kind, "examples.gearman.app_unsafe:application", env) as srv:
            result = run_load(srv.url, total=TRAP_REQUESTS, concurrency=CONCURRENCY, timeout=4.0)
        runs.append(result)
        if result.failures:
            break
    print(f"\n| {kind} | unsafe | {runs[-1].summary()} |")
    assert runs[-1].failures > 0, (
        f"the trap did not show under {kind}: {TRAP_ATTEMPTS} runs of {TRAP_REQUESTS} requests "
        f"at concurrency {CONCURRENCY} all succeeded:\n" + "\n".join(r.summary() for r in runs)
    )


@pytest.mark.parametrize("variant", ["locked", "pooled"])
@pytest.mark.parametrize("kind", KINDS)
def test_locked_and_pooled_have_no_failures_under_gevent(
    kind: str, variant: str, gearman_env: dict[str, str], gearmand: Gearmand
) -> None:
    with gevent_server(kind, f"examples.gearman.app_{variant}:application", gearman_env) as srv:
        result = run_load(srv.url, total=REQUESTS, concurrency=CONCURRENCY, timeout=20.0)
        connections = gearmand.client_connection_count()
        log = srv.log_text()
    print(
        f"\n| {kind} | {variant} | {result.summary()} | gearmand client connections: "
        f"{connections} |"
    )
    assert result.ok == REQUESTS, (
        f"{variant} under {kind}: {_describe(result)}\nserver log tail:\n{log[-2000:]}"
    )
    # locked: one connection per worker; pooled: at most its size (4) per worker.
    bound = WORKERS * (1 if variant == "locked" else 4)
    assert 1 <= connections <= bound, (
        f"{variant} under {kind} holds {connections} gearmand connections, expected 1..{bound}"
    )
