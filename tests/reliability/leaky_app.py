"""A WSGI app that leaks on purpose: one open file descriptor and 64 KB per request.

``test_sampling.py`` runs it on our server to prove the soak's flatness check can see a leak
(a check that never fails proves nothing). Imported by the server's master; runs on request
threads of each worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

# Never read: holding the references is the leak. Appended to by request threads (list.append
# is atomic).
_kept: list[object] = []


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    _kept.append(os.open(os.devnull, os.O_RDONLY))
    _kept.append(bytearray(64 * 1024))
    body = b"leaked\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
