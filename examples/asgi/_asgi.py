"""The ASGI plumbing both async examples share, so each app module is only its client.

A raw ASGI callable, no framework. Routes (JSON), the same as the threaded examples'
(``examples/realclients/_wsgi.py``), so their load driver checks these answers too:

* ``GET /item?n=N&token=T``: awaits the app's ``handle(n, token)`` and answers
  ``{"n": N, "token": T, "echo": <what the backend returned>, "pid": ...}``; the echo must be
  the token (a unique value the backend gave back), so another request's answer is caught. A
  driver error is a 503 ``{"error": "Type: message"}``; anything else raised (a client bound to
  another loop: ``RuntimeError``, ``AttributeError``) is a 500 with the same shape; bad input
  is a 400; a method other than GET a 405.
* ``GET /stats``: ``{"pid": ..., "form": ..., "stats": safeclients.stats(client) or null}``.
* ``GET /health``: ``{"pid": ...}`` (readiness; never touches the client).

The ``lifespan`` scope is handled: startup and shutdown are acknowledged (the clients need no
step there: ``per_loop`` and ``pooled`` close their instances inside the worker's loop when
``asyncio.run`` ends it); any other scope type (``websocket``) is refused by raising, which
the server reports and answers for.

Runs in each server worker, in its event loop's thread (uvicorn's); holds no state of its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import safeclients

FORM_ENV = "SAFECLIENTS_EXAMPLE_FORM"
#: "0" leaves out the app's import-time warm-up (``asyncio.run(client.ping())``); default "1".
WARM_UP_ENV = "SAFECLIENTS_EXAMPLE_WARM_UP"
POOL_SIZE = 4

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class UnknownForm(ValueError):
    """``SAFECLIENTS_EXAMPLE_FORM`` names no form this example has."""


class UnknownWarmUp(ValueError):
    """``SAFECLIENTS_EXAMPLE_WARM_UP`` is neither "1" nor "0"."""


class UnsupportedScope(ValueError):
    """A scope type other than ``http`` and ``lifespan`` (the app serves neither websockets
    nor anything else)."""


def form_from_env(forms: tuple[str, ...]) -> str:
    """The form ``SAFECLIENTS_EXAMPLE_FORM`` names (default: the first documented one after
    ``unwrapped``), refused unless it is one of ``forms``."""
    form = os.environ.get(FORM_ENV, forms[1])
    if form not in forms:
        raise UnknownForm(f"{FORM_ENV}={form!r} is not one of {', '.join(forms)}")
    return form


def warm_up_from_env() -> bool:
    """Whether the app touches its client at import (``SAFECLIENTS_EXAMPLE_WARM_UP``, "1" or
    "0"; default "1", as apps do)."""
    value = os.environ.get(WARM_UP_ENV, "1")
    if value not in ("0", "1"):
        raise UnknownWarmUp(f"{WARM_UP_ENV}={value!r} is neither 1 nor 0")
    return value == "1"


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown; nothing to make or close here (module docstring)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def make_application(
    handle: Callable[[int, str], Awaitable[str]],
    *,
    client: Any,
    form: str,
    backend_errors: tuple[type[BaseException], ...],
) -> ASGIApp:
    """An ASGI app whose ``/item`` route awaits ``handle(n, token)`` in the worker's loop."""

    async def item(query: dict[str, list[str]], send: Send) -> None:
        token = query.get("token", [""])[0]
        raw_n = query.get("n", [""])[0]
        if not token or not raw_n.isdigit():
            await _json(send, 400, {"error": f"need ?n=<digits>&token=<text>; got n={raw_n!r}"})
            return
        n = int(raw_n)
        try:
            echo = await handle(n, token)
        except backend_errors as exc:
            await _json(send, 503, {"error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        except Exception as exc:  # noqa: BLE001 (a client bound to another loop: reported)
            traceback.print_exc(file=sys.stderr)
            await _json(send, 500, {"error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        await _json(send, 200, {"n": n, "token": token, "echo": echo, "pid": os.getpid()})

    async def stats(send: Send) -> None:
        body: dict[str, Any] = {"pid": os.getpid(), "form": form, "stats": None}
        if safeclients.is_proxy(client):
            body["stats"] = dataclasses.asdict(safeclients.stats(client))
        await _json(send, 200, body)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise UnsupportedScope(f"this app serves http only, not {scope['type']!r}")
        path = scope.get("path", "/")
        if scope.get("method", "GET") != "GET":
            await _json(send, 405, {"error": f"{scope.get('method')} {path}: only GET"})
        elif path == "/item":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            await item(query, send)
        elif path == "/stats":
            await stats(send)
        elif path == "/health":
            await _json(send, 200, {"pid": os.getpid()})
        else:
            await _json(send, 404, {"error": f"no route {path}"})

    return application
