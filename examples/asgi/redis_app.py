"""redis.asyncio + Redis in an ASGI app, written as a user writes it: a module-global client,
touched at import with ``asyncio.run(cache.ping())``, a per-request key.

    REDIS_URL=redis://127.0.0.1:PORT/0 SAFECLIENTS_EXAMPLE_FORM=per_loop \\
    .venv/bin/gunicorn -k uvicorn.workers.UvicornWorker -w 2 --preload \\
        examples.asgi.redis_app:application

``SAFECLIENTS_EXAMPLE_FORM`` picks how the global ``cache`` is made:

* ``unwrapped``: one ``redis.asyncio.Redis`` made at import (the trap: the warm-up's
  ``asyncio.run()`` opens its connection in a loop that is closed at once, and with
  ``--preload`` the forked workers share that connection too);
* ``per_loop``: ``@safeclients.per_loop`` over a sync factory: one client per running loop,
  each worker's loop its own, closed inside it when the worker stops;
* ``per_loop_async``: the same over an async factory (``async def``, a ``PING`` before the
  client is handed out), awaited in the loop that will use it;
* ``pooled``: ``@safeclients.pooled(size=4)``: at most 4 clients per worker, one per command,
  a task waits *in* the loop for a free one;
* ``pooled_check``: the same with ``check=alive`` (a ``PING``) before each reuse.

Each request sets its own key to its token and reads it back. ``SAFECLIENTS_EXAMPLE_WARM_UP=0``
leaves out the import-time ``asyncio.run(cache.ping())``.

Which process runs what: the module body (the client and its warm-up) at import, in gunicorn's
master before the fork with ``--preload``, else in each worker before its loop starts; ``item``
in a worker's event loop, one task per request.
"""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio

import safeclients
from examples.asgi._asgi import (
    POOL_SIZE,
    form_from_env,
    make_application,
    warm_up_from_env,
)
from examples.realclients._wsgi import env_url  # the threaded examples' own

FORMS = ("unwrapped", "per_loop", "per_loop_async", "pooled", "pooled_check")
FORM = form_from_env(FORMS)


def connect() -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        env_url("REDIS_URL"), socket_timeout=5, socket_connect_timeout=5
    )


async def alive(client: redis.asyncio.Redis) -> bool:
    """The health check: ``PING`` (raises ``redis.exceptions.ConnectionError`` when dead)."""
    return bool(await client.ping())


if FORM == "unwrapped":
    cache = connect()
elif FORM == "per_loop":

    @safeclients.per_loop
    def cache() -> redis.asyncio.Redis:
        return connect()
elif FORM == "per_loop_async":

    @safeclients.per_loop
    async def cache() -> redis.asyncio.Redis:
        client = connect()
        await client.ping()  # connected before the first request uses it
        return client
elif FORM == "pooled":

    @safeclients.pooled(size=POOL_SIZE)
    def cache() -> redis.asyncio.Redis:
        return connect()
else:  # pooled_check

    @safeclients.pooled(size=POOL_SIZE, check=alive)
    def cache() -> redis.asyncio.Redis:
        return connect()


if warm_up_from_env():
    asyncio.run(cache.ping())  # at import, as apps do (in the master, with --preload)


async def item(n: int, token: str) -> str:
    key = f"safeclients-asgi:{token}"
    await cache.set(key, token, ex=60)
    value = await cache.get(key)
    return value.decode() if isinstance(value, bytes) else str(value)


application = make_application(
    item, client=cache, form=FORM, backend_errors=(redis.exceptions.RedisError, OSError)
)
