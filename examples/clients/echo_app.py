"""The WSGI app the HTTP example talks to: ``GET /echo?msg=X`` answers ``X``.

Served by our server in the tests (``python -m server examples.clients.echo_app:application``);
any WSGI server will do. Runs in the server's request threads; it keeps no state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs


def application(
    environ: dict[str, Any], start_response: Callable[[str, list[tuple[str, str]]], Any]
) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/echo":
        body = b"not found\n"
        start_response(
            "404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    msg = parse_qs(environ.get("QUERY_STRING", "")).get("msg", [""])[0]
    body = msg.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
