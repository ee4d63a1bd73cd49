"""Shared pieces of the integration tests: a session gearmand + 2 workers, and one way to serve
an example app under each of the four servers we test against.

Server kinds:

* ``ours``: ``python -m server`` (imports the app in the master, then forks: like uWSGI);
* ``uwsgi``: real uWSGI, default (non-lazy) loading, no ``py-call-osafterfork``;
* ``gunicorn``: gthread, the app imported in each worker after the fork;
* ``gunicorn-preload``: gthread with ``--preload``, the app imported in the master.

All run 2 workers x 8 threads on 127.0.0.1, port 0, and are stopped by PID when the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import pytest

from examples.support.gearmand import Gearmand, Workers
from examples.support.servers import gunicorn_server, uwsgi_server
from server.testing import ServerProcess

KINDS = ("ours", "uwsgi", "gunicorn", "gunicorn-preload")
WORKERS = 2
THREADS = 8
JOB_TIMEOUT = "10"  # seconds a job may take in the apps before they answer 503


class Served(Protocol):
    url: str
    pid: int

    def worker_pids(self) -> list[int]: ...
    def log_text(self) -> str: ...


@contextmanager
def serve(
    kind: str, app: str, env: Mapping[str, str], *, workers: int = WORKERS, threads: int = THREADS
) -> Iterator[Served]:
    """Run ``app`` (MODULE:CALLABLE) under the server ``kind`` for the duration of the block."""
    server: Any
    if kind == "ours":
        server = ServerProcess(app, workers=workers, threads=threads, env=dict(env))
    elif kind == "uwsgi":
        server = uwsgi_server(app, processes=workers, threads=threads, env=env)
    elif kind == "gunicorn":
        server = gunicorn_server(app, workers=workers, threads=threads, env=env)
    elif kind == "gunicorn-preload":
        server = gunicorn_server(app, workers=workers, threads=threads, preload=True, env=env)
    else:
        raise ValueError(f"unknown server kind {kind!r}; expected one of {KINDS}")
    with server as running:
        yield running


@pytest.fixture
def gearman_env(gearmand: Gearmand, gearman_workers: Workers) -> dict[str, str]:
    """The environment for the Gearman apps; gearmand and both workers are up when it returns."""
    gearmand.start()  # no-op when running (a test may have killed it)
    gearman_workers.ensure()
    return {"GEARMAN_SERVERS": gearmand.address, "GEARMAN_JOB_TIMEOUT": JOB_TIMEOUT}
