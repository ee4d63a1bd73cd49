"""The WSGI plumbing every real-client example shares, so each app module is only its client.

Routes (JSON):

* ``GET /item?n=N&token=T``: calls the app's ``handle(n, token)`` and answers
  ``{"n": N, "token": T, "echo": <what the backend returned>, "pid": ...}``. The caller knows
  what the echo must be (row ``n``'s value, or the token itself), so another request's answer
  is caught. A driver error is a 503 ``{"error": "Type: message"}``; anything else raised while
  the client is shared (``struct.error``, ``IndexError``, a protocol assertion) is a 500 with
  the same shape; bad input is a 400.
* ``GET /stats``: ``{"pid": ..., "policy": ..., "stats": safeclients.stats(client) or null}``.
* ``GET /health``: ``{"pid": ...}`` (readiness; never touches the client).

Runs in each server worker, on request threads; holds no state of its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import safeclients
from safeclients import profiles

POLICY_ENV = "SAFECLIENTS_EXAMPLE_POLICY"
POLICIES = ("unsafe", "per_thread", "locked", "pooled", "pooled_check")
#: ``pooled_check`` is ``@safeclients.pooled(size=4, check=...)``: a health check before reuse
#: (issue 11's ``check=``, psycopg_pool's name). Each app's check returns True when the
#: connection answers and raises the driver's error when it does not, so it fits either
#: convention (a boolean, or "raises when broken" as psycopg_pool's ``check`` does).
POOL_SIZE = 4

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class UnknownPolicy(ValueError):
    """``SAFECLIENTS_EXAMPLE_POLICY`` names no policy this example knows."""


class MissingBackendUrl(LookupError):
    """The app's URL variable (``DATABASE_URL``, ``AMQP_URL``, ``REDIS_URL``) is not set."""


def policy_from_env() -> str:
    policy = os.environ.get(POLICY_ENV, "pooled")
    if policy not in POLICIES:
        raise UnknownPolicy(f"{POLICY_ENV}={policy!r} is not one of {', '.join(POLICIES)}")
    return policy


def policy_client(policy: str, connect: Callable[[], Any], check: Callable[[Any], object]) -> Any:
    """The app's global client as ``policy`` makes it: ``connect()`` itself (``unsafe``, at
    import), or ``connect`` under ``per_thread``, ``locked``, ``pooled(size=POOL_SIZE)`` or
    ``pooled(size=POOL_SIZE, check=check)`` (``pooled_check``). Runs at import, in the
    master before the fork."""
    if policy == "unsafe":
        return connect()
    if policy == "per_thread":
        return safeclients.per_thread(connect)
    if policy == "locked":
        return safeclients.locked(connect)
    if policy == "pooled":
        return safeclients.pooled(connect, size=POOL_SIZE)
    if policy == "pooled_check":
        return safeclients.pooled(connect, size=POOL_SIZE, check=check)
    raise UnknownPolicy(f"{POLICY_ENV}={policy!r} is not one of {', '.join(POLICIES)}")


def profile_check(qualname: str) -> Callable[[Any], object]:
    """The health check of the profile safeclients ships for ``qualname`` (what
    ``pooled_check`` passes as ``check=``)."""
    profile = profiles.registered_as(qualname)
    if profile is None or profile.check is None:
        raise LookupError(f"safeclients ships no profile with a check for {qualname}")
    return profile.check


def env_url(name: str) -> str:
    url = os.environ.get(name, "")
    if not url:
        raise MissingBackendUrl(
            f"set {name} to the backend's URL (a launcher of "
            f"examples.support.backends gives it as .url)"
        )
    return url


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def make_application(
    handle: Callable[[int, str], str],
    *,
    client: Any,
    policy: str,
    backend_errors: tuple[type[BaseException], ...],
) -> WSGIApp:
    """A WSGI app whose ``/item`` route runs ``handle(n, token)`` on a request thread."""

    def item(query: dict[str, list[str]], start_response: StartResponse) -> list[bytes]:
        token = query.get("token", [""])[0]
        raw_n = query.get("n", [""])[0]
        if not token or not raw_n.isdigit():
            return _json(
                start_response,
                "400 Bad Request",
                {"error": f"need ?n=<digits>&token=<text>; got n={raw_n!r}"},
            )
        n = int(raw_n)
        try:
            echo = handle(n, token)
        except backend_errors as exc:
            return _json(
                start_response,
                "503 Service Unavailable",
                {"error": f"{type(exc).__name__}: {exc}"[:300]},
            )
        except Exception as exc:  # noqa: BLE001 (a shared client's corruption: reported, not hidden)
            traceback.print_exc(file=sys.stderr)
            return _json(
                start_response,
                "500 Internal Server Error",
                {"error": f"{type(exc).__name__}: {exc}"[:300]},
            )
        return _json(
            start_response, "200 OK", {"n": n, "token": token, "echo": echo, "pid": os.getpid()}
        )

    def stats(start_response: StartResponse) -> list[bytes]:
        body: dict[str, Any] = {"pid": os.getpid(), "policy": policy, "stats": None}
        if safeclients.is_proxy(client):
            body["stats"] = dataclasses.asdict(safeclients.stats(client))
        return _json(start_response, "200 OK", body)

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/item":
            return item(parse_qs(environ.get("QUERY_STRING", "")), start_response)
        if path == "/stats":
            return stats(start_response)
        if path == "/health":
            return _json(start_response, "200 OK", {"pid": os.getpid()})
        return _json(start_response, "404 Not Found", {"error": f"no route {path}"})

    return application
