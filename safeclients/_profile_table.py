"""The shipped client profiles: one entry per client type, each claim cited next to it.

Read by ``safeclients.profiles`` at import (``SHIPPED``). Nothing here imports an optional
package: classes are named by their qualified names, and every ``close``/``check`` below
imports its package lazily, inside the call, or uses attribute calls only (a DB-API
connection carries its exception classes as attributes: ``conn.InterfaceError``).

Process and thread: ``close`` runs wherever a policy retires an instance (a request thread,
the thread's exit, ``dispose()``); ``check`` runs in the request thread about to reuse an
instance. Across a fork: plain data and functions; nothing is held.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from typing import Any

from safeclients import _disconnect, _probes
from safeclients._profile import Profile

__all__ = ["SHIPPED"]


def _class(name: str) -> Any:
    """The class ``"package.module.Class"``, imported now: called only with a live client of
    that package in hand, so the package is importable (and usually imported already)."""
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


_FORKED = "A connection opened before the server forks is shared by every worker process."
_PEP249 = "https://peps.python.org/pep-0249/#threadsafety"


# --- pygearman (python-gearman) --------------------------------------------------------------
# Read in the installed pygearman 0.2.6 (the python-gearman code base):
# - No lock anywhere (the package never imports `threading`); GearmanClient keeps "the
#   authoritative copy of all requests that this client knows about" in one dict and each
#   GearmanConnection buffers commands in _outgoing_buffer/_incoming_buffer (client.py,
#   connection.py): two threads' jobs and replies get mixed.
# - broken: connection_manager.py treats gearman.errors.ConnectionError as a dead connection
#   (`except ConnectionError: dead_connections.add(...)`); client.py raises ServerUnavailable
#   "Found no valid connections" when none of its servers can be reached.
# - close: GearmanConnectionManager.shutdown() "Shutdown all our connections one by one";
#   GearmanConnection.close() swallows socket.error, so shutting down a dead client is quiet.
# - check: none; the client has no ping (ping_server belongs to GearmanAdminClient, a separate
#   connection).
GEARMAN = Profile(
    qualname="gearman.client.GearmanClient",
    reason="Keeps job and reply state in unlocked per-connection buffers, so threads sharing "
    "it get each other's results or protocol errors. " + _FORKED,
    suggest="per_thread",
    sources=(
        "https://pypi.org/project/pygearman/0.2.6/",
        "https://github.com/Yelp/python-gearman/blob/master/gearman/client.py",
        "https://github.com/Yelp/python-gearman/blob/master/gearman/connection.py",
        "https://github.com/Yelp/python-gearman/blob/master/gearman/connection_manager.py",
    ),
    probe=_probes.gearman,
    broken=("gearman.errors.ConnectionError", "gearman.errors.ServerUnavailable"),
    close=lambda client: client.shutdown(),
)


# --- PyMySQL ---------------------------------------------------------------------------------
# - pymysql/__init__.py: `threadsafety = 1`, which PEP 249 defines as "Threads may share the
#   module, but not connections."
# - check: Connection.ping(reconnect=False) "Check if the server is alive" raises
#   err.Error("Already closed") without a socket, else the error of the COM_PING round trip
#   (pymysql/connections.py); `reconnect` is deprecated there.
# - broken: after a lost connection the next command raises err.InterfaceError(0, "") ("if
#   not self._sock: raise err.InterfaceError(0, '')", connections.py _execute_command); a lost
#   or refused connection is err.OperationalError (2013 "Lost connection", 2006 "gone away").
#   But err.OperationalError is also every unmapped server error >= 1000 (err.py
#   _map_error: 1205 lock wait timeout, 1213 deadlock) on a live connection, so the judgement
#   is by code and by `open` (_disconnect.pymysql), never by class.
# - close: Connection.close() ":raise Error: If the connection is already closed"; it only
#   raises then (the COM_QUIT write is suppressed), so "already closed" is swallowed.
# - derived: cursor() returns a Cursor bound to the connection (cursors.py Cursor.__init__
#   keeps `self.connection`).
def _close_pymysql(conn: Any) -> None:
    # err.Error("Already closed") is the only error close() raises.
    with contextlib.suppress(_class("pymysql.err.Error")):
        conn.close()


# - Proven on MariaDB (tests/realclients): disconnect judgement both ways (1054, 1205, KILL),
#   fork (the parent keeps its connection), load + kill under uWSGI and our server (test_proof).
PYMYSQL = Profile(
    qualname="pymysql.connections.Connection",
    reason="PyMySQL declares DB-API threadsafety = 1 (threads may share the module, not "
    "connections): sharing one gives 'Packet sequence number wrong' and other threads' "
    "rows. " + _FORKED + " Hold a transaction across calls with checkout().",
    suggest="pooled",
    sources=(
        "https://github.com/PyMySQL/PyMySQL/blob/main/pymysql/__init__.py",
        "https://github.com/PyMySQL/PyMySQL/blob/main/pymysql/connections.py",
        "https://github.com/PyMySQL/PyMySQL/blob/main/pymysql/cursors.py",
        _PEP249,
    ),
    probe=_probes.pymysql,
    broken=("pymysql.err.InterfaceError", "pymysql.err.OperationalError"),
    close=_close_pymysql,
    check=lambda conn: conn.ping(reconnect=False),
    derived=frozenset({"cursor"}),
    disconnect=_disconnect.pymysql,
)


# --- mysqlclient (MySQLdb) -------------------------------------------------------------------
# - MySQLdb/__init__.py: `threadsafety = 1` (PEP 249: connections may not be shared).
# - MySQLdb/connections.py: `class Connection(_mysql.connection)`; cursor() "Create a cursor
#   on which queries may be performed" returns `cursorclass(self)`; the class carries the
#   exception classes as attributes (`InterfaceError = InterfaceError`, ...), which close
#   uses so nothing is imported.
# - check: _mysql's ping() "Checks whether or not the connection to the server is working"
#   (raises OperationalError when it is not).
# - broken: MySQLdb._exceptions.OperationalError (2006 "server has gone away", 2013 "Lost
#   connection"), InterfaceError (a closed connection); 1.x named the module _mysql_exceptions.
# - close: _mysql.c close() on a closed connection fails: 2.x runs check_connection() first
#   (`if (!(c->open)) return _mysql_Exception(c)`, an InterfaceError), 1.x raised
#   ProgrammingError "closing a closed connection". Skipped when not `open`, and swallowed.
def _close_mysqlclient(conn: Any) -> None:
    if not conn.open:
        return
    with contextlib.suppress(conn.ProgrammingError, conn.InterfaceError):
        conn.close()


# - Proven on MariaDB (tests/realclients): disconnect judgement both ways (1054, 1205, KILL)
#   and fork (a child's exit used to send COM_QUIT on the parent's connection); load + kill
#   under uWSGI and our server (test_proof, examples/realclients/mysqlclient_app.py).
MYSQLCLIENT = Profile(
    qualname="MySQLdb.connections.Connection",
    reason="mysqlclient declares DB-API threadsafety = 1 (threads may share the module, not "
    "connections): threads sharing one interleave queries and results. " + _FORKED,
    suggest="pooled",
    sources=(
        "https://github.com/PyMySQL/mysqlclient/blob/main/src/MySQLdb/__init__.py",
        "https://github.com/PyMySQL/mysqlclient/blob/main/src/MySQLdb/connections.py",
        "https://github.com/PyMySQL/mysqlclient/blob/main/src/MySQLdb/_mysql.c",
        _PEP249,
    ),
    probe=_probes.mysqlclient,
    broken=(
        "MySQLdb._exceptions.InterfaceError",
        "MySQLdb._exceptions.OperationalError",
        "_mysql_exceptions.InterfaceError",
        "_mysql_exceptions.OperationalError",
    ),
    close=_close_mysqlclient,
    check=lambda conn: conn.ping(),
    derived=frozenset({"cursor"}),
    disconnect=_disconnect.mysqlclient,
)


# --- psycopg2 --------------------------------------------------------------------------------
# - psycopg2 docs, "Thread and process safety": connections are level-2 thread safe, but
#   "using many cursors on the same connection, all the commands will be executed in the same
#   session (and in the same transaction if the connection is not in autocommit mode)", and
#   "libpq connections shouldn't be used by a forked processes, so when using a module such
#   as multiprocessing or a forking web deploy method such as FastCGI make sure to create the
#   connections after the fork." Shared transactions are why thread_safe is False here.
# - broken: psycopg2.InterfaceError "connection already closed", psycopg2.OperationalError
#   "server closed the connection unexpectedly" (psycopg2 docs, connection.closed: "nonzero
#   if it is closed or broken"). OperationalError is also a deadlock or a statement timeout
#   on a live connection: judged by `closed` and libpq's message (_disconnect.psycopg2).
# - close: connection.close() "Close the connection now"; skipped when `closed` is set.
# - check: psycopg2 has no ping; SQLAlchemy's pre-ping runs "SELECT 1" on a cursor (engine
#   default do_ping); a transaction the check itself opened is rolled back. Inside a failed
#   transaction (TRANSACTION_STATUS_INERROR 3) a statement fails with InFailedSqlTransaction
#   whatever the connection's health: the server just answered, so it is alive unless
#   `closed`; a command in flight (ACTIVE 1) is left alone; UNKNOWN (4) is dead.
# - derived: cursor() "Return a new cursor" bound to the connection.
def _check_psycopg2(conn: Any) -> None:
    if conn.closed:
        raise conn.InterfaceError("connection already closed")
    status = conn.get_transaction_status()  # psycopg2.extensions.TRANSACTION_STATUS_*
    if status == 4:
        raise conn.OperationalError("the connection is in an unknown state")
    if status not in (0, 2):  # ACTIVE, INERROR: see above
        return
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
    if status == 0 and not conn.autocommit:
        conn.rollback()


# - Proven on PostgreSQL (tests/realclients): disconnect judgement both ways (statement
#   timeout, pg_terminate_backend), the check in every transaction state, fork, load + kill.
PSYCOPG2 = Profile(
    qualname="psycopg2.extensions.connection",
    reason="psycopg2 serialises calls on a connection but all threads share its session and "
    "transaction, so one thread's commit or rollback ends another's; psycopg2 says "
    "libpq connections must not be used across a fork (create them after it). " + _FORKED,
    suggest="pooled",
    sources=(
        "https://www.psycopg.org/docs/usage.html#thread-and-process-safety",
        "https://www.psycopg.org/docs/connection.html",
        "https://docs.sqlalchemy.org/en/20/core/pooling.html#disconnect-handling-pessimistic",
    ),
    probe=_probes.psycopg2,
    broken=("psycopg2.InterfaceError", "psycopg2.OperationalError"),
    close=lambda conn: None if conn.closed else conn.close(),
    check=_check_psycopg2,
    derived=frozenset({"cursor"}),
    disconnect=_disconnect.psycopg2,
)


# --- psycopg 3 -------------------------------------------------------------------------------
# - psycopg 3 docs, "Concurrent operations": "Connection objects are thread-safe" but "All
#   the cursors that share the same connection will also share the same transaction", and
#   "if one thread causes a database server error, all the other cursors will be in error
#   state until transaction rollback". libpq connections are not usable across a fork
#   (psycopg2 docs above; the same libpq underneath).
# - Names: psycopg sets `__module__ = "psycopg"` on Connection and on the DB-API exceptions
#   (psycopg/connection.py, psycopg/errors.py), so the class is "psycopg.Connection" and the
#   errors "psycopg.OperationalError", whatever module defines them.
# - broken: psycopg.OperationalError ("the connection is closed", connection.py
#   _exec_command; SQLSTATE class 08 "Connection Exception", errors.py), psycopg.InterfaceError
#   (a connection in an unusable status). Connection.broken: "True if the connection was
#   interrupted".
# - close: Connection.close() "Close the database connection": `if self.closed: return`.
# - check: psycopg_pool's ConnectionPool.check_connection() switches autocommit on around a
#   "SELECT 1", which psycopg refuses ("can't change 'autocommit' now: connection in
#   transaction status INTRANS", Connection._check_intrans) when the connection is inside its
#   default transaction, as a per_thread or locked instance can be between calls: that check
#   would fail on a healthy connection. This one never touches autocommit: it reads
#   conn.info.transaction_status (pq.TransactionStatus: IDLE 0, ACTIVE 1, INTRANS 2,
#   INERROR 3, UNKNOWN 4); IDLE: "SELECT 1" then a rollback of the transaction the check
#   itself began (outside autocommit); INTRANS: "SELECT 1" inside the app's transaction
#   (changes nothing); INERROR: the server just answered, and a statement would fail
#   (InFailedSqlTransaction) without saying anything of the connection: alive if libpq's
#   status is CONNECTION_OK (pgconn.status 0); ACTIVE (a command in flight) is left alone;
#   closed, broken or UNKNOWN is dead.
# - derived: cursor(), execute() (returns a cursor), transaction(), pipeline().
def _check_psycopg(conn: Any) -> None:
    if conn.closed or conn.broken:
        raise _class("psycopg.OperationalError")("the connection is closed")
    status = int(conn.info.transaction_status)
    if status == 0:  # IDLE
        conn.execute("SELECT 1")
        if not conn.autocommit:
            conn.rollback()
    elif status == 2:  # INTRANS
        conn.execute("SELECT 1")
    elif status == 3:  # INERROR
        if int(conn.pgconn.status) != 0:
            raise _class("psycopg.OperationalError")("the connection is bad (libpq status)")
    elif status == 4:  # UNKNOWN: libpq has lost it
        raise _class("psycopg.OperationalError")("the connection is in an unknown state")


# - Proven on PostgreSQL (tests/realclients): disconnect judgement both ways, the check in
#   every transaction state (never touching autocommit), fork; load + kill under uWSGI and
#   our server (test_proof, examples/realclients/psycopg_app.py).
PSYCOPG = Profile(
    qualname="psycopg.Connection",
    reason="psycopg 3 connections are thread-safe but all threads share one transaction: "
    "one thread's commit, rollback or server error ends the others'; libpq "
    "connections must not be used across a fork. " + _FORKED,
    suggest="pooled",
    sources=(
        "https://www.psycopg.org/psycopg3/docs/advanced/async.html",
        "https://www.psycopg.org/psycopg3/docs/api/connections.html",
        "https://github.com/psycopg/psycopg/blob/master/psycopg/psycopg/connection.py",
        "https://github.com/psycopg/psycopg/blob/master/psycopg/psycopg/errors.py",
        "https://github.com/psycopg/psycopg/blob/master/psycopg_pool/psycopg_pool/pool.py",
    ),
    probe=_probes.psycopg,
    broken=("psycopg.InterfaceError", "psycopg.OperationalError"),
    close=lambda conn: conn.close(),
    check=_check_psycopg,
    derived=frozenset({"cursor", "execute", "transaction", "pipeline"}),
    disconnect=_disconnect.psycopg,
)


# --- asyncpg ---------------------------------------------------------------------------------
# - asyncpg docs, "asyncpg Usage", Connection Pools: "a single connection can only be used by
#   one coroutine at a time" is why the pool exists; Connection._check_open and the protocol's
#   busy state raise InterfaceError "cannot perform operation: another operation is in
#   progress" when a second task uses a connection that is mid-query (connection.py).
# - A connection (and a pool) belongs to the loop it was made in: "Future attached to a
#   different loop" from any other.
# - Served safely by a pool per loop: per_loop(lambda: asyncpg.create_pool(dsn)) (per_loop
#   awaits the coroutine create_pool returns, in the loop that will use it, and awaits
#   pool.close() at the loop's end); each call acquires one of the pool's connections for
#   itself, and a transaction is `async with pool.acquire() as conn, conn.transaction():`.
#   A bare Connection under per_loop is one connection for every task of the loop: a
#   concurrent use raises the misuse error above, which is *not* a disconnect (kept); and
#   while one task holds it (a transaction, a block, a cursor), another task's statement
#   would run inside that task's transaction and be rolled back with it, silently: per_loop
#   refuses it (one_task, ConcurrentUseError). pooled(asyncpg.connect) gives each task a
#   connection of its own.
# - disconnect: is_closed(), SQLSTATE class 08 and 57P01-03, socket errors; not a timeout
#   (asyncpg cancels the query, the connection stays usable) (_disconnect.asyncpg).
ASYNCPG_CONNECTION = Profile(
    qualname="asyncpg.connection.Connection",
    reason="An asyncpg connection serves one coroutine at a time and is bound to the event "
    "loop that made it: a second task gets InterfaceError 'another operation is in "
    "progress', a second loop 'attached to a different loop'. Give each task a connection: "
    "safeclients.pooled over `async def connect(): return await asyncpg.connect(dsn)` (each "
    "awaited in the loop that uses it), or a pool per loop, "
    "safeclients.per_loop(lambda: asyncpg.create_pool(dsn)). " + _FORKED,
    suggest="pooled",
    sources=(
        "https://magicstack.github.io/asyncpg/current/usage.html#connection-pools",
        "https://github.com/MagicStack/asyncpg/blob/master/asyncpg/connection.py",
        "https://github.com/MagicStack/asyncpg/blob/master/asyncpg/exceptions/__init__.py",
    ),
    disconnect=_disconnect.asyncpg,
    one_task=True,
)

# - asyncpg docs, "asyncpg Usage", Connection Pools: a pool serves concurrent coroutines, each
#   call acquiring a connection of its own; like its connections it belongs to the loop that
#   made it (create_pool's loop), so the form is a pool per loop:
#   per_loop(lambda: asyncpg.create_pool(dsn)).
# - disconnect: only a pool that is closing or closed (Pool.is_closing()). A connection of it
#   that the server terminated fails the query that was on it and is reconnected by the pool at
#   its next acquire (pool.py PoolConnectionHolder.acquire); before this profile the default
#   judgement took that ConnectionDoesNotExistError for the pool's death, and per_loop closed
#   the loop's pool under its other tasks ("pool is closing": 32 of 76 requests after a kill
#   under gunicorn's uvicorn worker, tests/realclients/test_asgi.py).
# - Proven on PostgreSQL: tests/realclients/test_asyncpg.py, and the ASGI proof
#   (examples/asgi: load, every backend killed, load).
ASYNCPG_POOL = Profile(
    qualname="asyncpg.pool.Pool",
    reason="An asyncpg pool serves the concurrent tasks of one event loop, and only that loop "
    "(the loop create_pool ran in): a second loop gets 'attached to a different loop'. Use one "
    "pool per loop: safeclients.per_loop(lambda: asyncpg.create_pool(dsn)). " + _FORKED,
    suggest="per_loop",
    sources=(
        "https://magicstack.github.io/asyncpg/current/usage.html#connection-pools",
        "https://github.com/MagicStack/asyncpg/blob/master/asyncpg/pool.py",
    ),
    disconnect=_disconnect.asyncpg_pool,
)


# --- pika ------------------------------------------------------------------------------------
# - pika docs, FAQ "Is Pika thread safe?": "Pika does not have any notion of threading in the
#   code. If you want to use Pika with threading, make sure you have a Pika connection per
#   thread, created in that thread. It is not safe to share one Pika connection across
#   threads, with one exception: you may call the connection method add_callback_threadsafe
#   from another thread".
# - broken: pika/exceptions.py: AMQPConnectionError is the base of StreamLostError,
#   ConnectionClosed(ByBroker), AMQPHeartbeatTimeout, ConnectionWrongStateError; a channel
#   is dead after AMQPChannelError (ChannelClosed(ByBroker), ChannelWrongStateError).
# - close: BlockingConnection.close() ":raises pika.exceptions.ConnectionWrongStateError: if
#   called on a closed connection" (blocking_connection.py), which is the case for one the
#   broker closed: closed only when is_open, and an AMQPConnectionError raised while closing
#   a dead one is swallowed.
# - check: process_data_events(time_limit=0) "Will make sure that data events are
#   processed" and "Zero means return as soon as possible"; it raises on a closed connection.
# - derived: BlockingConnection.channel() returns a BlockingChannel bound to it;
#   BlockingChannel.consume() returns a generator over its deliveries.
# - A channel's close leaves its connection open (BlockingChannel.close "Will invoke a clean
#   shutdown of the channel"), so a channel's profile closes its `connection` too.
def _close_pika_connection(conn: Any) -> None:
    if conn.is_open:
        # Closed by the broker between the look at is_open and close().
        with contextlib.suppress(_class("pika.exceptions.AMQPConnectionError")):
            conn.close()


def _close_pika_channel(channel: Any) -> None:
    if channel.is_open:
        with contextlib.suppress(
            _class("pika.exceptions.AMQPChannelError"),
            _class("pika.exceptions.AMQPConnectionError"),
        ):
            channel.close()
    _close_pika_connection(channel.connection)


def _check_pika_connection(conn: Any) -> None:
    if not conn.is_open:
        raise _class("pika.exceptions.ConnectionWrongStateError")("BlockingConnection is closed")
    conn.process_data_events(time_limit=0)


def _check_pika_channel(channel: Any) -> None:
    if not channel.is_open:
        wrong_state = _class("pika.exceptions.ChannelWrongStateError")
        raise wrong_state(f"BlockingChannel {channel.channel_number} is closed")
    _check_pika_connection(channel.connection)


_PIKA_REASON = (
    "pika has no notion of threads: its docs say not to share a connection across "
    "threads (one connection per thread, created in that thread), and its channels "
    "ride on that connection. " + _FORKED
)
_PIKA_SOURCES = (
    "https://pika.readthedocs.io/en/stable/faq.html",
    "https://github.com/pika/pika/blob/main/pika/adapters/blocking_connection.py",
    "https://github.com/pika/pika/blob/main/pika/exceptions.py",
)
# - Proven on RabbitMQ (tests/realclients): fork, load + kill (test_proof).
PIKA_CONNECTION = Profile(
    qualname="pika.adapters.blocking_connection.BlockingConnection",
    reason=_PIKA_REASON,
    suggest="per_thread",
    sources=_PIKA_SOURCES,
    probe=_probes.pika_connection,
    broken=("pika.exceptions.AMQPConnectionError",),
    close=_close_pika_connection,
    check=_check_pika_connection,
    derived=frozenset({"channel"}),
)
PIKA_CHANNEL = Profile(
    qualname="pika.adapters.blocking_connection.BlockingChannel",
    reason=_PIKA_REASON + " Closing a channel leaves its connection open.",
    suggest="per_thread",
    sources=_PIKA_SOURCES,
    probe=_probes.pika_channel,
    broken=("pika.exceptions.AMQPConnectionError", "pika.exceptions.AMQPChannelError"),
    close=_close_pika_channel,
    check=_check_pika_channel,
    derived=frozenset({"consume"}),
)


# --- redis-py --------------------------------------------------------------------------------
# - Thread-safe: a command takes a connection from the client's ConnectionPool for its
#   duration (redis/client.py); "It is not safe to pass PubSub or Pipeline objects between
#   threads" (the Redis class docstring), hence pipeline()/pubsub()/monitor() are derived.
# - Fork: ConnectionPool._checkpid() "attempts to keep ConnectionPool fork-safe", resetting
#   the pool in a child; its own comment names the failure: a fork while another thread holds
#   _fork_lock leaves the child deadlocked (redis.ChildDeadlockedError after 5 s), which a
#   hookless fork from a threaded master can hit. One client per process avoids it.
# - broken: none: on ConnectionError/TimeoutError the client disconnects that pooled
#   connection (client.py _close_connection: conn.disconnect()) and the next command
#   reconnects; the client object itself never goes dead.
# - close: Redis.close() releases its connection, and closes the pool when it created it
#   (auto_close_connection_pool).
# - check: ping().
# - Proven on Redis (tests/realclients): fork, load + kill (test_proof).
REDIS = Profile(
    qualname="redis.client.Redis",
    reason="redis-py clients are thread-safe (a command borrows a pooled connection) and "
    "fork-aware (the pool notices a new pid and opens new connections in the child), but "
    "that fork detection can deadlock a child forked while another thread holds the pool's "
    "fork lock (ChildDeadlockedError), and its pipelines and pubsub objects must not be "
    "shared between threads.",
    suggest="per_process",
    sources=(
        "https://github.com/redis/redis-py/blob/master/redis/client.py",
        "https://github.com/redis/redis-py/blob/master/redis/connection.py",
        "https://redis.readthedocs.io/en/stable/advanced_features.html",
    ),
    probe=_probes.redis,
    close=lambda client: client.close(),
    check=lambda client: client.ping(),
    derived=frozenset({"pipeline", "pubsub", "monitor"}),
    thread_safe=True,
    fork_aware=True,
    disconnect=_disconnect.never,
)


# --- redis.asyncio ---------------------------------------------------------------------------
# - redis/asyncio/client.py and connection.py: each command borrows a connection of the client's
#   ConnectionPool, so one client serves the tasks of one loop at once; a connection's
#   StreamReader/StreamWriter belong to the loop that opened it. Used from another loop it fails
#   ("Event loop is closed" after an import-time asyncio.run(r.ping()) warm-up; "attached to a
#   different loop"). The asyncio pool has no pid check (the sync pool's _checkpid): a client
#   connected before a fork hands its connections to every worker.
# - broken: none, as redis-py's: a failed command drops its connection and is retried on a new
#   one (the client's Retry); the client object itself never goes dead.
# - close: aclose() (the policies' default for an async client).
# - Proven: examples/asgi under gunicorn -k uvicorn.workers.UvicornWorker, with and without
#   --preload (tests/realclients/test_asgi.py): the unwrapped global warmed up at import fails
#   once per worker, per_loop and pooled answer every request and heal after every connection is
#   killed. Before this profile the audit did not see that global at all.
REDIS_ASYNCIO = Profile(
    qualname="redis.asyncio.client.Redis",
    reason="A redis.asyncio client serves the tasks of one event loop (each command borrows a "
    "pooled connection), but its connections belong to the loop that opened them: a global "
    "touched at import (asyncio.run(client.ping())) carries a connection of a closed loop into "
    "the server's loop ('Event loop is closed'), and one connected before the server forks "
    "hands that connection to every worker (the asyncio pool does not check its pid).",
    suggest="per_loop",
    sources=(
        "https://github.com/redis/redis-py/blob/master/redis/asyncio/client.py",
        "https://github.com/redis/redis-py/blob/master/redis/asyncio/connection.py",
        "https://redis.readthedocs.io/en/stable/examples/asyncio_examples.html",
    ),
    probe=_probes.redis_asyncio,
    disconnect=_disconnect.never,
)


# --- pymemcache ------------------------------------------------------------------------------
# - pymemcache docs, "Using a client pool": "pymemcache.client.base.PooledClient is a
#   thread-safe client pool that provides the same API as pymemcache.client.base.Client"; the
#   base Client holds one socket (self.sock) and reads replies from it without a lock
#   (pinterest/pymemcache#34 "The client objects don't appear to be threadsafe").
# - broken: none: on MemcacheUnexpectedCloseError the client closes its socket itself and
#   "The next call to a method that requires a connection will re-open it" (Client.close).
# - close: Client.close() closes the socket if open (idempotent).
# - check: version() round-trips the "version" command.
# - Proven on memcached under threads (tests/clients/test_memcache.py) and across a fork (the
#   parent keeps its connection: tests/realclients/test_fork.py); under our server and uWSGI,
#   load, memcached restarted on its port, load (tests/realclients/test_proof.py): 0 wrong,
#   one failed call per instance (the client reopens its socket), 0 with check=.
PYMEMCACHE = Profile(
    qualname="pymemcache.client.base.Client",
    reason="One socket read without a lock: concurrent threads read each other's replies "
    "(wrong values) or fail with protocol errors; pymemcache points to PooledClient. " + _FORKED,
    suggest="pooled",
    sources=(
        "https://pymemcache.readthedocs.io/en/latest/getting_started.html",
        "https://github.com/pinterest/pymemcache/blob/master/pymemcache/client/base.py",
        "https://github.com/pinterest/pymemcache/issues/34",
    ),
    probe=_probes.attr_socket("sock"),
    close=lambda client: client.close(),
    check=lambda client: client.version(),
    disconnect=_disconnect.never,
)


# --- sqlite3 ---------------------------------------------------------------------------------
# - Python docs, sqlite3.connect(check_same_thread): "If True (default), ProgrammingError will
#   be raised if the database connection is used by a thread other than the one that created
#   it. If False, the connection may be accessed in multiple threads; write operations may
#   need to be serialized by the user to avoid data corruption." Transactions belong to the
#   connection. SQLite, "How To Corrupt An SQLite Database File" 2.6: "Carrying an open
#   database connection across a fork()".
# - broken: only a closed connection (a local file; no connection to lose). sqlite3 raises
#   OperationalError for SQL errors ("no such table", "database is locked"): the connection,
#   its transaction and a :memory: database are kept (_disconnect.sqlite3).
# - close: Connection.close(); closing twice is allowed.
# - derived: cursor(), execute(), executemany(), executescript() return a Cursor of the
#   connection; blobopen() (3.11) a Blob.
SQLITE3 = Profile(
    qualname="sqlite3.Connection",
    reason="Refuses other threads by default (check_same_thread), and with it off the open "
    "transaction is shared, so one thread's commit or rollback ends another's; SQLite "
    "warns that carrying an open connection across a fork() can corrupt the database. "
    "With locked or pooled, hold a transaction with checkout().",
    suggest="per_thread",
    sources=(
        "https://docs.python.org/3/library/sqlite3.html#sqlite3.connect",
        "https://www.sqlite.org/howtocorrupt.html",
    ),
    probe=_probes.sqlite,
    derived=frozenset({"cursor", "execute", "executemany", "executescript", "blobopen"}),
    disconnect=_disconnect.sqlite3,
)


# --- http.client -----------------------------------------------------------------------------
# - CPython Lib/http/client.py module docstring: HTTPConnection "goes through a number of
#   'states', which define when a client may legally make another request or fetch the
#   response ... a second request may not be started until {response-headers-read}"; one
#   socket and one state (CannotSendRequest / ResponseNotReady otherwise). HTTPSConnection
#   derives from it.
# - broken: any HTTPException (BadStatusLine, RemoteDisconnected, IncompleteRead,
#   ImproperConnectionState) or OSError leaves the state machine unusable.
# - close: HTTPConnection.close() is idempotent (it clears `sock` and `__response`).
# - derived: getresponse() returns an HTTPResponse reading from the connection's socket.
HTTP_CONNECTION = Profile(
    qualname="http.client.HTTPConnection",
    reason="One request/response state machine over one socket: a second thread's request "
    "raises CannotSendRequest/ResponseNotReady or reads the other thread's response. "
    + _FORKED
    + " Hold request and response together with checkout().",
    suggest="pooled",
    sources=(
        "https://github.com/python/cpython/blob/main/Lib/http/client.py",
        "https://docs.python.org/3/library/http.client.html",
    ),
    probe=_probes.attr_socket("sock"),
    broken=("http.client.HTTPException", "builtins.OSError"),
    derived=frozenset({"getresponse"}),
)


# --- smtplib ---------------------------------------------------------------------------------
# - CPython Lib/smtplib.py: SMTP "manages a connection to an SMTP or ESMTP server"; docmd()
#   is putcmd() then getreply() on the one socket, with no lock (no threading import).
# - broken: SMTPServerDisconnected ("raised when the server unexpectedly disconnects, or when
#   an attempt is made to use the SMTP instance before connecting it"), a 421 reply (smtplib
#   closes the session itself on 421 to MAIL/RCPT), socket errors. SMTPException derives
#   from OSError: a refused recipient (550) must not discard the session
#   (_disconnect.smtplib).
# - close: the default obj.close(), idempotent (it clears `file` and `sock`). Not quit(): it
#   waits for the server's reply with the client's own timeout, None unless the app set one,
#   and raises SMTPServerDisconnected on a dead session.
# - check: noop() "Does nothing" on the server: a round trip, whose reply code must be 250.
#   noop() returns (code, message) and raises nothing for a reply: a session the server ended
#   with "421 ... closing transmission channel" (an idle timeout: Postfix's smtpd_timeout,
#   Exim's smtp_receive_timeout) answers 421, or the socket is closed
#   (SMTPServerDisconnected); either means dead.
def _check_smtp(smtp: Any) -> None:
    code, message = smtp.noop()
    if code != 250:
        smtp.close()  # the server is closing it (421) or answered nonsense: never reuse it
        raise _class("smtplib.SMTPResponseException")(code, message)


# - Proven on aiosmtpd (tests/realclients): 550 keeps the session, 421 discards it, the
#   check replaces a timed-out (421) or restarted server's session; under our server and
#   uWSGI, load, server restart, load (tests/realclients/test_proof.py): 0 wrong, one failed
#   message per instance, 0 with check=, every accepted message delivered once.
SMTP = Profile(
    qualname="smtplib.SMTP",
    reason="A stateful command/reply session on one socket without a lock: threads interleave "
    "commands and read each other's replies. " + _FORKED + " Hold a whole message with checkout().",
    suggest="locked",
    sources=(
        "https://github.com/python/cpython/blob/main/Lib/smtplib.py",
        "https://docs.python.org/3/library/smtplib.html",
    ),
    probe=_probes.attr_socket("sock"),
    broken=("smtplib.SMTPServerDisconnected", "builtins.ConnectionError", "builtins.TimeoutError"),
    check=_check_smtp,
    disconnect=_disconnect.smtplib,
)


# --- ftplib ----------------------------------------------------------------------------------
# - CPython Lib/ftplib.py: FTP.sendcmd() "Send a command and return the response" is putcmd()
#   then getresp() on the one control connection, with no lock; the session (login, cwd) is
#   state.
# - broken: getline() raises EOFError when the server closed the control connection; a 421
#   reply (error_temp), error_proto, socket errors; a 5xx reply (error_perm) is a refused
#   command on a live session (_disconnect.ftplib).
# - close: the default obj.close() "Close the connection without assuming anything about
#   it" (idempotent). Not quit(): it waits for the reply to QUIT with the client's own
#   timeout (None by default) and fails with AttributeError on an unconnected FTP().
# - check: voidcmd("NOOP") expects a 2xx reply.
# - derived: transfercmd()/ntransfercmd() return the data connection of the session.
# - Proven on pyftpdlib (tests/realclients): 550 keeps the session, 421 discards it, the check
#   replaces a timed-out (421) or restarted server's session; under our server and uWSGI,
#   load, server restart, load (tests/realclients/test_proof.py): 0 wrong, one failed call per
#   instance, 0 with check=, every stored file once.
FTP = Profile(
    qualname="ftplib.FTP",
    reason="A stateful command/response session (login, cwd) on one control connection "
    "without a lock: threads read each other's responses. " + _FORKED,
    suggest="locked",
    sources=(
        "https://github.com/python/cpython/blob/main/Lib/ftplib.py",
        "https://docs.python.org/3/library/ftplib.html",
    ),
    probe=_probes.attr_socket("sock"),
    broken=("builtins.EOFError", "builtins.ConnectionError", "builtins.TimeoutError"),
    check=lambda ftp: ftp.voidcmd("NOOP"),
    derived=frozenset({"transfercmd", "ntransfercmd"}),
    disconnect=_disconnect.ftplib,
)


# --- paramiko --------------------------------------------------------------------------------
# - paramiko/transport.py: `class Transport(threading.Thread, ...)`: each SSHClient's
#   connection is served by a reader thread of the process that connected; a forked child
#   has no such thread, so an inherited client is dead there (and shares the parent's
#   socket). Concurrent use of one client's channels from several threads is reported
#   unreliable upstream (paramiko/paramiko#709 "Multiple channels from the same client
#   unreliable").
# - broken: paramiko.ssh_exception.SSHException ("SSH session not active" from
#   open_channel on a dead transport), EOFError, socket errors.
# - close: SSHClient.close() "Close this SSHClient and its underlying Transport"; it returns
#   at once when `_transport is None` (a second call).
# - check: the transport is active, then send_ignore() sends an SSH_MSG_IGNORE (a keepalive).
# - derived: exec_command() (channel files), invoke_shell(), open_sftp(), get_transport().
def _check_paramiko(client: Any) -> None:
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise _class("paramiko.ssh_exception.SSHException")("SSH session not active")
    transport.send_ignore()


# - Proven on OpenSSH's sshd (tests/realclients/test_ssh.py): every command's output its own
#   under threads (pooled); after sshd is restarted and every session cut, the check replaces
#   each dead client before reuse (0 failed calls); a fork child's use leaves the parent's
#   session working (per_process). Not under uWSGI load yet.
PARAMIKO = Profile(
    qualname="paramiko.client.SSHClient",
    reason="An SSH session is served by a Transport thread of the process that connected: "
    "forked workers inherit the socket without the thread, and threads sharing one "
    "client's channels are unreliable (paramiko#709). " + _FORKED,
    suggest="pooled",
    sources=(
        "https://github.com/paramiko/paramiko/blob/main/paramiko/transport.py",
        "https://github.com/paramiko/paramiko/blob/main/paramiko/client.py",
        "https://github.com/paramiko/paramiko/issues/709",
    ),
    probe=_probes.paramiko,
    broken=("paramiko.ssh_exception.SSHException", "builtins.EOFError", "builtins.OSError"),
    close=lambda client: client.close(),
    check=_check_paramiko,
    derived=frozenset({"exec_command", "invoke_shell", "open_sftp", "get_transport"}),
)


# --- grpc channels ---------------------------------------------------------------------------
# - Thread-safe: grpc/grpc#9320 (maintainer: channels "provided by gRPC Python are
#   thread-safe") and #13914 ("stubs/channels are thread safe and intended to be shared among
#   threads"); documented in grpc/grpc#15773 "Specify thread-safety of grpc-created channels".
# - Not fork-safe: grpc doc/fork_support.md: "gRPC Python wraps gRPC core, which uses
#   multithreading for performance, and hence doesn't support fork()", except with
#   GRPC_ENABLE_FORK_SUPPORT and the epoll1/poll strategy; "pre-fork" use "where the
#   application creates gRPC Python objects (e.g., client channel) before invoking fork()" is
#   the hard case. One channel per process, created after the fork, needs no lock.
# - broken: none: a channel reconnects by itself (TRANSIENT_FAILURE, then backoff); an
#   RpcError is a failed call, not a dead channel.
# - close: Channel.close(); check: none (a ready future would need a timeout to be safe).
# - derived: unary_unary/unary_stream/stream_unary/stream_stream return multi-callables
#   bound to the channel (what generated stubs are made of).
# - Proven on grpcio's own server (tests/realclients/test_grpc.py, per_process): every answer
#   its own across a fork (the child calls with its own channel) and a server restart (the
#   channel reconnects by itself: at most one failed call); under our server and uWSGI, load,
#   server restart, load (tests/realclients/test_proof.py): 0 failed calls in every policy
#   but once (pooled with an app's channel_ready_future check: 4 of 200, UNAVAILABLE).
#   There the unsafe pre-fork channel answered every call too (grpcio 1.85): not proof of
#   safety, the documented case stays unsupported.
GRPC_CHANNEL = Profile(
    qualname="grpc._channel.Channel",
    reason="gRPC channels are thread-safe but gRPC core's threads do not survive a fork: a "
    "channel created before the server forks hangs or fails in the workers. " + _FORKED,
    suggest="per_process",
    sources=(
        "https://github.com/grpc/grpc/blob/master/doc/fork_support.md",
        "https://github.com/grpc/grpc/issues/9320",
        "https://github.com/grpc/grpc/issues/13914",
        "https://github.com/grpc/grpc/pull/15773",
    ),
    close=lambda channel: channel.close(),
    derived=frozenset({"unary_unary", "unary_stream", "stream_unary", "stream_stream"}),
    thread_safe=True,
)


# --- paho-mqtt ------------------------------------------------------------------------------
# - paho/mqtt/client.py: Client.loop_start() "This is part of the threaded client interface.
#   Call this once to start a new thread to process network traffic"; publish() from other
#   threads queues under the client's mutexes (_out_message_mutex, _callback_mutex, ...), and
#   that network thread writes it out: threads may share it (thread_safe), a fork may not.
# - Fork: the child has no network thread (only the forking thread survives a fork), yet
#   `client._thread.is_alive()` can still say True there (after uWSGI's hookless fork
#   threading's bookkeeping is the parent's copy), so publishes queue to nobody and
#   wait_for_publish() waits for ever; the socket is the parent's.
# - close: there is no close(): disconnect() sends DISCONNECT through the network loop, then
#   loop_stop() "will block until the network thread finishes" (only if that thread runs here).
# - check: is_connected() "True if connection exists", and the network thread, if started,
#   really runs in this process (Linux: /proc/self/task/<native_id>; elsewhere is_alive()).
# - broken: a client that is not connected any more (is_connected() False after the error).
# - check_interval 0: publish() on a client that lost its broker raises nothing (it returns an
#   MQTTMessageInfo whose rc is MQTT_ERR_NO_CONN; wait_for_publish() raises later, outside the
#   proxy's call), and paho's thread reconnects only after reconnect_delay (1 s, doubling), so
#   the check is the only way the proxy learns; it costs no round trip (a /proc lookup and a
#   flag), so it runs before every use. Measured under uWSGI: without it, every publish after a
#   broker restart failed until the 200 requests ended (examples/realclients/mqtt_app.py).
def _paho_thread_runs(thread: Any) -> bool:
    if not thread.is_alive():
        return False
    native = getattr(thread, "native_id", None)
    if native is None or not os.path.isdir("/proc/self/task"):
        return True
    return os.path.exists(f"/proc/self/task/{native}")


def _check_paho(client: Any) -> None:
    thread = getattr(client, "_thread", None)
    if thread is not None and not _paho_thread_runs(thread):
        raise ConnectionError("the MQTT client's network thread does not run in this process")
    if not client.is_connected():
        raise ConnectionError("the MQTT client is not connected")


def _close_paho(client: Any) -> None:
    client.disconnect()
    thread = getattr(client, "_thread", None)
    if thread is not None and _paho_thread_runs(thread):
        client.loop_stop()


def _paho_disconnect(exc: BaseException, client: Any) -> bool:
    return client is not None and not client.is_connected()


# - Proven on Mosquitto (tests/realclients/test_mqtt.py, per_process): every message delivered
#   once across a broker restart and across a fork (the child publishes with its own client);
#   the audit finding and the dead-thread check are tested in tests/audit; under our server and
#   uWSGI, load, broker restart, load (tests/realclients/test_proof.py): every policy 0 failed.
PAHO_MQTT = Profile(
    qualname="paho.mqtt.client.Client",
    reason="An MQTT client's network thread (loop_start) runs only in the process that "
    "started it: a forked worker inherits the client and its socket without the thread, so "
    "its publishes queue to nobody and wait_for_publish() hangs. " + _FORKED,
    suggest="per_process",
    sources=(
        "https://github.com/eclipse-paho/paho.mqtt.python/blob/master/src/paho/mqtt/client.py",
        "https://eclipse.dev/paho/files/paho.mqtt.python/html/client.html",
    ),
    probe=_probes.attr_socket("_sock"),
    close=_close_paho,
    check=_check_paho,
    check_interval=0.0,
    thread_safe=True,
    disconnect=_paho_disconnect,
)


# --- socket.socket ---------------------------------------------------------------------------
# - Python docs, socket.sendall(): "Unlike send(), this method continues to send data from
#   bytes until either all data has been sent or an error occurs", i.e. in several send()
#   calls that two threads can interleave; a socket's descriptor is inherited by a forked
#   child (os.fork).
SOCKET = Profile(
    qualname="socket.socket",
    reason="A byte stream: two threads' sendall()/recv() calls interleave and split each "
    "other's messages. " + _FORKED,
    suggest="per_thread",
    sources=("https://docs.python.org/3/library/socket.html#socket.socket.sendall",),
    probe=_probes.peer,
    broken=("builtins.OSError",),
)


#: Every shipped profile, in the order the registry receives them.
SHIPPED: tuple[Profile, ...] = (
    GEARMAN,
    PYMYSQL,
    MYSQLCLIENT,
    PSYCOPG2,
    PSYCOPG,
    ASYNCPG_CONNECTION,
    ASYNCPG_POOL,
    PIKA_CONNECTION,
    PIKA_CHANNEL,
    REDIS,
    REDIS_ASYNCIO,
    PYMEMCACHE,
    SQLITE3,
    HTTP_CONNECTION,
    SMTP,
    FTP,
    PARAMIKO,
    GRPC_CHANNEL,
    PAHO_MQTT,
    SOCKET,
)
