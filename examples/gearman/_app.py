"""The WSGI plumbing every Gearman example variant shares, so each variant is only its client.

A variant module defines how it gets a ``gearman.GearmanClient`` for the current request and
calls :func:`make_application`::

    client = new_client()                              # the trap: one client, every thread
    application = make_application(lambda: client)

Routes (all JSON):

* ``GET /job?payload=X``: submits ``reverse`` and answers ``{"payload": X, "result": X reversed,
  "pid": worker pid}``. A backend failure (job server down, timeout, connection trouble) is a
  503 ``{"error": "..."}``; anything else (the shared-client corruption: ``KeyError`` on a job
  handle, ``ValueError`` on a closed fd, ...) is a 500 ``{"error": "..."}`` without a traceback
  (the traceback goes to the server's stderr).
* ``GET /stats``: ``{"pid": ..., "stats": safeclients.stats(global) or null, ...}``.
* ``GET /conn``: connects the client if it is not yet, then reports the local port(s) of its
  socket(s), plus pid and thread,
  to show whether workers share a connection inherited over ``fork()``.

Runs in each server worker, on request threads. Nothing here holds process-wide state except
the one client the variant hands in.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

import gearman
import gearman.errors

import safeclients

TASK = b"reverse"
JOB_TIMEOUT = float(os.environ.get("GEARMAN_JOB_TIMEOUT", "10"))
DEFAULT_SERVERS = "127.0.0.1:4730"
#: The pooled variant's size comes from here (default 4); the benchmarks compare 1, 2, 4 and 8.
POOL_SIZE_ENV = "GEARMAN_POOL_SIZE"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class JobFailed(RuntimeError):
    """gearmand answered, but the job did not complete (worker failure or poll timeout)."""


# Backend trouble a correct client can meet: answered with 503.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (
    gearman.errors.ServerUnavailable,
    gearman.errors.ExceededConnectionAttempts,
    gearman.errors.ConnectionError,
    JobFailed,
    TimeoutError,
    ConnectionError,
    OSError,
    safeclients.PoolTimeout,
)


def servers_from_env() -> list[str]:
    """Job servers from ``GEARMAN_SERVERS`` (comma-separated host:port)."""
    raw = os.environ.get("GEARMAN_SERVERS", DEFAULT_SERVERS)
    return [s.strip() for s in raw.split(",") if s.strip()]


def new_client() -> gearman.GearmanClient:
    """A fresh, unconnected client (pygearman connects lazily, on the first job)."""
    return gearman.GearmanClient(servers_from_env())


def connect_now(client: gearman.GearmanClient) -> gearman.GearmanClient:
    """Open every connection of ``client`` now (the import-time-connect variants use this)."""
    for connection in client.connection_list:
        client.establish_connection(connection)
    return client


def close_client(client: gearman.GearmanClient) -> None:
    """The ``close=`` hook for the safeclients policies."""
    client.shutdown()


def submit_reverse(client: gearman.GearmanClient, payload: bytes) -> bytes:
    """Run one ``reverse`` job and return its result; :class:`JobFailed` if it did not complete."""
    request = client.submit_job(TASK, payload, poll_timeout=JOB_TIMEOUT)
    if request.timed_out:
        raise JobFailed(f"job not complete after {JOB_TIMEOUT:.1f} s (state {request.state})")
    if request.state != gearman.JOB_COMPLETE:
        raise JobFailed(f"job ended in state {request.state}")
    result: bytes = request.result
    return result


def client_is_broken(exc: BaseException) -> bool:
    """``discard_on`` for the safeclients variants: retire the client, don't reuse it.

    Connection trouble, any gearman error, and a job that did not complete: pygearman keeps that
    job's request in the client, so its late reply would reach the next job on the same client
    (``KeyError`` on a job handle). A fresh client is cheap; a confused one is not.
    """
    return isinstance(exc, (OSError, gearman.errors.GearmanError, JobFailed, KeyError))


def local_ports(client: gearman.GearmanClient) -> list[int]:
    """Local TCP ports of the client's connected sockets (``[]`` before the first connect)."""
    ports = []
    for connection in client.connection_list:
        sock = connection.gearman_socket
        if connection.connected and sock is not None:
            ports.append(sock.getsockname()[1])
    return ports


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


@contextmanager
def _raw(client: Any) -> Iterator[gearman.GearmanClient]:
    """The raw client behind a safeclients proxy (checked out), or ``client`` itself."""
    if safeclients.is_proxy(client):
        with safeclients.checkout(client) as raw:
            yield raw
    else:
        yield client


def make_application(
    get_client: Callable[[], Any],
    *,
    proxy: Any = None,
    extra_stats: Callable[[], dict[str, Any]] | None = None,
) -> WSGIApp:
    """A WSGI app over one client source.

    ``get_client()`` returns the client to use for this request (a proxy, a thread's own client,
    or the one shared global). ``proxy`` is the safeclients proxy for ``/stats`` and ``/conn``
    (``None`` for unwrapped variants). ``extra_stats`` adds variant-specific counters.
    """

    def job(query: dict[str, list[str]], start_response: StartResponse) -> list[bytes]:
        payload = query.get("payload", [""])[0]
        if not payload:
            return _json(start_response, "400 Bad Request", {"error": "missing ?payload="})
        try:
            # One checkout for the job, so a failure inside it retires the client (discard_on).
            with _raw(get_client()) as client:
                result = submit_reverse(client, payload.encode())
        except BACKEND_ERRORS as exc:
            return _json(
                start_response, "503 Service Unavailable", {"error": f"{type(exc).__name__}: {exc}"}
            )
        except gearman.errors.GearmanError as exc:  # InvalidClientState & co: a corrupted client
            print(f"gearman app: {type(exc).__name__}: {exc}", file=sys.stderr)
            return _json(
                start_response,
                "500 Internal Server Error",
                {"error": f"{type(exc).__name__}: {exc}"},
            )
        except (KeyError, ValueError, AttributeError, TypeError, AssertionError) as exc:
            # What a client shared between threads raises from inside pygearman (issue 4).
            traceback.print_exc(file=sys.stderr)
            return _json(
                start_response,
                "500 Internal Server Error",
                {"error": f"{type(exc).__name__}: {exc}"},
            )
        return _json(
            start_response,
            "200 OK",
            {"payload": payload, "result": result.decode(errors="replace"), "pid": os.getpid()},
        )

    def stats(start_response: StartResponse) -> list[bytes]:
        body: dict[str, Any] = {"pid": os.getpid(), "stats": None}
        if proxy is not None:
            body["stats"] = dataclasses.asdict(safeclients.stats(proxy))
        if extra_stats is not None:
            body.update(extra_stats())
        return _json(start_response, "200 OK", body)

    def conn(start_response: StartResponse) -> list[bytes]:
        target = proxy if proxy is not None else get_client()
        with _raw(target) as raw:
            connect_now(raw)  # a no-op when connected (the import-time-connect variants)
            ports = local_ports(raw)
        return _json(
            start_response,
            "200 OK",
            {"pid": os.getpid(), "thread": threading.current_thread().name, "ports": ports},
        )

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/job":
            return job(query, start_response)
        if path == "/stats":
            return stats(start_response)
        if path == "/conn":
            return conn(start_response)
        if path == "/health":
            return _json(start_response, "200 OK", {"pid": os.getpid()})
        return _json(start_response, "404 Not Found", {"error": f"no route {path}"})

    return application
