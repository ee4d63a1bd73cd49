"""asyncpg + PostgreSQL in an ASGI app, written as a user writes it: a module-global
connection (or pool), touched at import with ``asyncio.run()``, a per-request round trip.

    DATABASE_URL=postgresql://app:app-password@127.0.0.1:PORT/app \\
    SAFECLIENTS_EXAMPLE_FORM=per_loop_pool \\
    .venv/bin/gunicorn -k uvicorn.workers.UvicornWorker -w 2 --preload \\
        examples.asgi.asyncpg_app:application

``SAFECLIENTS_EXAMPLE_FORM`` picks how the global ``db`` is made:

* ``unwrapped``: one connection made at import, ``asyncio.run(asyncpg.connect(dsn))`` (the
  trap: its loop is closed at once, the workers' loops are others, one connection serves one
  task at a time, and with ``--preload`` the workers share its socket);
* ``per_loop_connect``: ``@safeclients.per_loop`` over an async factory, ``async def db():
  return await asyncpg.connect(dsn)``: one connection per running loop, awaited there;
* ``per_loop_pool``: ``safeclients.per_loop(lambda: asyncpg.create_pool(dsn))``, the form
  the docs advise for concurrent tasks: one asyncpg pool per running loop;
* ``pooled``: ``@safeclients.pooled(size=4)`` over the async factory: at most 4 connections
  per worker, each awaited in the loop that uses it, one per call;
* ``pooled_check``: the same with ``check=alive`` before each reuse.

Each request asks ``SELECT $1::text`` of its own token. ``SAFECLIENTS_EXAMPLE_WARM_UP=0``
leaves out the import-time ``asyncio.run(db.fetchval("SELECT 1"))`` (``unwrapped`` connects at
import either way).

Which process runs what: the module body (the client and its warm-up) at import, in gunicorn's
master before the fork with ``--preload``, else in each worker before its loop starts; ``item``
in a worker's event loop, one task per request.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

import safeclients
from examples.asgi._asgi import (
    POOL_SIZE,
    form_from_env,
    make_application,
    warm_up_from_env,
)
from examples.realclients._wsgi import env_url  # the threaded examples' own

FORMS = ("unwrapped", "per_loop_connect", "per_loop_pool", "pooled", "pooled_check")
FORM = form_from_env(FORMS)
DSN = env_url("DATABASE_URL")
TIMEOUT = 5.0  # seconds: connecting, and any one statement (server-side)
SETTINGS = {"statement_timeout": "5000"}
# The pool per loop of per_loop_pool: as many connections as a worker's tasks may use at once.
POOL_MAX = int(os.environ.get("SAFECLIENTS_EXAMPLE_POOL_MAX", "8"))


async def connect() -> asyncpg.Connection:
    return await asyncpg.connect(DSN, timeout=TIMEOUT, server_settings=SETTINGS)


async def alive(conn: asyncpg.Connection) -> bool:
    """The health check: a round trip (raises when the connection is dead), awaited by
    ``pooled`` in the worker's loop before an instance is reused."""
    return bool(await conn.fetchval("SELECT 1") == 1)


if FORM == "unwrapped":
    db = asyncio.run(connect())
elif FORM == "per_loop_connect":

    @safeclients.per_loop
    async def db() -> asyncpg.Connection:
        return await connect()
elif FORM == "per_loop_pool":
    db = safeclients.per_loop(
        lambda: asyncpg.create_pool(
            DSN, min_size=1, max_size=POOL_MAX, timeout=TIMEOUT, server_settings=SETTINGS
        )
    )
elif FORM == "pooled":

    @safeclients.pooled(size=POOL_SIZE)
    async def db() -> asyncpg.Connection:
        return await connect()
else:  # pooled_check

    @safeclients.pooled(size=POOL_SIZE, check=alive)
    async def db() -> asyncpg.Connection:
        return await connect()


if FORM != "unwrapped" and warm_up_from_env():
    asyncio.run(db.fetchval("SELECT 1"))  # at import, as apps do (in the master, with --preload)


async def item(n: int, token: str) -> str:
    return str(await db.fetchval("SELECT $1::text", token))


application = make_application(
    item,
    client=db,
    form=FORM,
    backend_errors=(asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError),
)
