"""redis-py + Redis, written as a user writes it: a module-global client, a per-request key.

    REDIS_URL=redis://127.0.0.1:PORT/0 \\
    SAFECLIENTS_EXAMPLE_POLICY=pooled python -m server examples.realclients.redis_app:application

A plain ``redis.Redis`` is already thread- and fork-safe (its ``ConnectionPool`` hands each
command its own connection and checks the PID: redis-py's README, "Thread Safety"); the client
that is not is the one with ``single_connection_client=True`` ("the connection pool is not used
... this Redis instance is not thread safe"), which apps pick to avoid a checkout per command
(or to keep ``SELECT``/``CLIENT SETNAME`` state). That is the client here.
``SAFECLIENTS_EXAMPLE_POLICY`` picks how the global ``cache`` is made: ``unsafe`` (one client at
import), or a factory decorated with ``@safeclients.per_thread``, ``@safeclients.locked`` or
``@safeclients.pooled(size=4)``, or (``pooled_check``) ``@safeclients.pooled(size=4,
check=alive)``. Each request sets its own key to its token and reads it back; the ``PING`` at
import touches the client.
"""

from __future__ import annotations

import redis

import safeclients
from examples.realclients._wsgi import POOL_SIZE, env_url, make_application, policy_from_env

POLICY = policy_from_env()


def connect() -> redis.Redis:
    return redis.Redis.from_url(
        env_url("REDIS_URL"),
        single_connection_client=True,
        socket_timeout=5,
        socket_connect_timeout=5,
    )


def alive(client: redis.Redis) -> bool:
    """The health check: ``PING`` (raises ``redis.exceptions.ConnectionError`` when dead)."""
    return bool(client.ping())


if POLICY == "unsafe":
    cache = connect()
elif POLICY == "per_thread":

    @safeclients.per_thread
    def cache() -> redis.Redis:
        return connect()
elif POLICY == "locked":

    @safeclients.locked
    def cache() -> redis.Redis:
        return connect()
elif POLICY == "pooled":

    @safeclients.pooled(size=POOL_SIZE)
    def cache() -> redis.Redis:
        return connect()
else:  # pooled_check

    @safeclients.pooled(size=POOL_SIZE, check=alive)
    def cache() -> redis.Redis:
        return connect()


cache.ping()  # at import, as apps do (this opens the first connection, in the master)


def item(n: int, token: str) -> str:
    key = f"safeclients-example:{token}"
    cache.set(key, token, ex=60)
    value = cache.get(key)
    return value.decode() if isinstance(value, bytes) else str(value)


application = make_application(
    item, client=cache, policy=POLICY, backend_errors=(redis.exceptions.RedisError, OSError)
)
