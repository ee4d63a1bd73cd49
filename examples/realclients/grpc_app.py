"""gRPC + an echo server, written as a user writes it: a module-global channel, a stub-style
multi-callable per request.

    GRPC_URL=grpc://127.0.0.1:PORT \\
    SAFECLIENTS_EXAMPLE_POLICY=pooled python -m server examples.realclients.grpc_app:application

A ``grpc.Channel`` is thread-safe but not fork-safe (gRPC's doc/fork_support.md: a channel made
before ``fork()`` is "the hard case"; the GRPC_CHANNEL profile suggests ``per_process``).
``SAFECLIENTS_EXAMPLE_POLICY`` picks how the global ``channel`` is made
(:func:`~examples.realclients._wsgi.policy_client`); the profile has no check (a channel
reconnects by itself), so ``pooled_check`` passes :func:`ready`: the channel is connected, or
connects within a second. Each request calls ``/safeclients.Echo/Echo`` with its token (a
2 s deadline) and answers what came back. A call at import touches the client.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import grpc  # type: ignore[import-untyped]

from examples.realclients._wsgi import env_url, make_application, policy_client, policy_from_env
from examples.support.grpc_echo import METHOD

POLICY = policy_from_env()
DEADLINE = 2.0  # seconds per call: under the load driver's request timeout
READY_TIMEOUT = 1.0


def connect() -> grpc.Channel:
    url = urlsplit(env_url("GRPC_URL"))
    return grpc.insecure_channel(f"{url.hostname or '127.0.0.1'}:{url.port or 50051}")


def ready(channel: grpc.Channel) -> bool:
    """The check: the channel connects (or is connected) within ``READY_TIMEOUT`` seconds;
    raises ``grpc.FutureTimeoutError`` when it does not."""
    grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT)
    return True


channel: Any = policy_client(POLICY, connect, ready)
channel.unary_unary(METHOD)(b"import", timeout=DEADLINE)  # at import, as apps do (in the master)


def item(n: int, token: str) -> str:
    answer = channel.unary_unary(METHOD)(token.encode(), timeout=DEADLINE)
    return bytes(answer).decode(errors="replace")


application = make_application(
    item, client=channel, policy=POLICY, backend_errors=(grpc.RpcError, grpc.FutureTimeoutError)
)
