"""The per-call rows: every way of calling ``obj.m(x)`` that we compare.

Each setup imports what it needs itself, so a missing optional package
(werkzeug) or an unfinished library feature skips that row only. Pools are all
of size :data:`POOL_SIZE`; pooled rows are disposed after their last sample.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from benchmarks.baselines import (
    ConditionPool,
    FakeClient,
    FakeDBAPIConnection,
    ForkGeneration,
    ForkSafeLocal,
    ForkSafeLocalWipe,
    LifoQueuePool,
    PidCheckedLock,
)
from benchmarks.harness import Case, Namespace

POOL_SIZE = 4
#: Threads of the contended table; its extra rows have a pool slot per thread.
CONTENDED_THREADS = 8

# Keys of the rows the targets refer to.
RAW = "raw"
FORK_SAFE_LOCAL = "local_forksafe"
PID_LOCK = "pid_lock"
FORK_SAFE_LOCAL_WIPE = "local_wipe"
WIPE_LOCK = "wipe_lock"
LIFO_POOL = "lifo_pool"
SQLALCHEMY_POOL = "sqlalchemy_pool"
PER_THREAD = "per_thread"
LOCKED = "locked"
POOLED = "pooled"
POOLED_CHECKOUT = "pooled_checkout"
GUARDED = "guarded"

POOL_STMT = "c = pool.get()\ntry:\n    c.m(x)\nfinally:\n    pool.put(c)"


def _ns(**names: Any) -> Namespace:
    return {"x": 42, **names}


def _raw() -> Namespace:
    return _ns(obj=FakeClient())


def _local() -> Namespace:
    tl = threading.local()
    tl.client = FakeClient()
    return _ns(tl=tl)


def _forksafe_local() -> Namespace:
    return _ns(fsl=ForkSafeLocal(FakeClient))


def _forksafe_local_wipe() -> Namespace:
    return _ns(fsl=ForkSafeLocalWipe(FakeClient))


def _wipe_lock() -> Namespace:
    holder = PidCheckedLock(FakeClient)
    forks = ForkGeneration()
    holder.generation = forks.current()  # type: ignore[attr-defined]
    return _ns(h=holder, forks=forks, page=forks.page)


def _lock() -> Namespace:
    return _ns(obj=FakeClient(), lock=threading.Lock())


def _pid_lock() -> Namespace:
    return _ns(h=PidCheckedLock(FakeClient), getpid=os.getpid)


def _wrapt_proxy() -> Namespace:
    import wrapt

    class Forwarding(wrapt.ObjectProxy):  # type: ignore[type-arg]
        """A subclass that adds nothing: every name is forwarded."""

    return _ns(wp=Forwarding(FakeClient()))


def _wrapt_synchronized() -> Namespace:
    import wrapt

    class Synchronized:
        def __init__(self, client: FakeClient) -> None:
            self._client = client

        @wrapt.synchronized
        def m(self, x: Any) -> Any:
            return self._client.m(x)

    return _ns(so=Synchronized(FakeClient()))


def _werkzeug() -> Namespace:
    from contextvars import ContextVar

    from werkzeug.local import LocalProxy

    current: ContextVar[FakeClient] = ContextVar("client")
    current.set(FakeClient())
    return _ns(lp=LocalProxy(current))


def _condition_pool() -> Namespace:
    return _ns(pool=ConditionPool(FakeClient, POOL_SIZE))


def _lifo_pool() -> Namespace:
    return _ns(pool=LifoQueuePool(FakeClient, POOL_SIZE))


def _pymemcache_pool() -> Namespace:
    from pymemcache.pool import ObjectPool  # type: ignore[import-untyped]

    # Unbounded, as PooledClient by default: a bounded ObjectPool raises when empty.
    return _ns(pool=ObjectPool(FakeClient))


def _sqlalchemy_pool() -> Namespace:
    from sqlalchemy.pool import QueuePool

    creator = FakeDBAPIConnection  # a zero-arg creator, as with a DBAPI's connect()
    return _ns(pool=QueuePool(creator, pool_size=POOL_SIZE, max_overflow=0))  # type: ignore[arg-type]


def _dispose_sqlalchemy(ns: Namespace) -> None:
    ns["pool"].dispose()


def _per_thread() -> Namespace:
    import safeclients

    return _ns(p=safeclients.per_thread(FakeClient))


def _locked() -> Namespace:
    import safeclients

    return _ns(p=safeclients.locked(FakeClient()))


def _pooled() -> Namespace:
    import safeclients

    return _ns(p=safeclients.pooled(FakeClient, size=POOL_SIZE), checkout=safeclients.checkout)


def _lifo_pool_per_thread() -> Namespace:
    return _ns(pool=LifoQueuePool(FakeClient, CONTENDED_THREADS))


def _pooled_per_thread() -> Namespace:
    import safeclients

    return _ns(p=safeclients.pooled(FakeClient, size=CONTENDED_THREADS))


def _guarded() -> Namespace:
    import safeclients

    return _ns(p=safeclients.guarded(FakeClient()))


def _dispose_proxy(ns: Namespace) -> None:
    import safeclients

    safeclients.dispose(ns["p"], final=True)


def per_call_cases() -> list[Case]:
    """All rows of the per-call table, anchors first, then the project's proxies."""
    return [
        Case(RAW, "raw call", "obj.m(x)", _raw),
        Case(
            "local",
            "hand-written threading.local (already created)",
            "tl.client.m(x)",
            _local,
            threaded=False,
        ),
        Case(
            FORK_SAFE_LOCAL,
            "hand-written fork-safe threading.local (lazy create + pid check)",
            "fsl.get().m(x)",
            _forksafe_local,
        ),
        Case("lock", "hand-written `with lock:`", "with lock:\n    obj.m(x)", _lock),
        Case(
            PID_LOCK,
            "hand-written pid check + `with lock:`",
            "if getpid() != h.pid:\n    h.after_fork()\nwith h.lock:\n    h.client.m(x)",
            _pid_lock,
        ),
        Case(
            FORK_SAFE_LOCAL_WIPE,
            "fork-safe threading.local, fork check by MADV_WIPEONFORK page (no syscall)",
            "fsl.get().m(x)",
            _forksafe_local_wipe,
        ),
        Case(
            WIPE_LOCK,
            "MADV_WIPEONFORK fork check + `with lock:` (no syscall)",
            "if not page[0]:\n    forks.rearm()\nif forks.generation != h.generation:\n"
            "    h.after_fork()\n    h.generation = forks.generation\n"
            "with h.lock:\n    h.client.m(x)",
            _wipe_lock,
        ),
        Case("wrapt_proxy", "`wrapt.ObjectProxy` subclass forwarding `m`", "wp.m(x)", _wrapt_proxy),
        Case("wrapt_sync", "`wrapt.synchronized` method", "so.m(x)", _wrapt_synchronized),
        Case(
            "werkzeug",
            "werkzeug `LocalProxy` over a ContextVar",
            "lp.m(x)",
            _werkzeug,
            threaded=False,
        ),
        Case(
            "condition_pool",
            "list + Condition pool, get/put around the call",
            POOL_STMT,
            _condition_pool,
        ),
        Case(
            LIFO_POOL,
            "`queue.LifoQueue` pool with pid check (redis-py style)",
            POOL_STMT,
            _lifo_pool,
        ),
        Case(
            "pymemcache_pool",
            "pymemcache `ObjectPool` get_and_release (PooledClient style)",
            "with pool.get_and_release(destroy_on_fail=True) as c:\n    c.m(x)",
            _pymemcache_pool,
        ),
        Case(
            SQLALCHEMY_POOL,
            "SQLAlchemy `QueuePool` connect + call + close",
            "c = pool.connect()\ntry:\n    c.m(x)\nfinally:\n    c.close()",
            _sqlalchemy_pool,
            teardown=_dispose_sqlalchemy,
        ),
        Case(
            PER_THREAD,
            "safeclients `per_thread`",
            "p.m(x)",
            _per_thread,
            baseline=FORK_SAFE_LOCAL,
            teardown=_dispose_proxy,
        ),
        Case(
            LOCKED,
            "safeclients `locked`",
            "p.m(x)",
            _locked,
            baseline=PID_LOCK,
            teardown=_dispose_proxy,
        ),
        Case(
            POOLED,
            "safeclients `pooled` (per-call checkout)",
            "p.m(x)",
            _pooled,
            baseline=LIFO_POOL,
            teardown=_dispose_proxy,
        ),
        Case(
            POOLED_CHECKOUT,
            "safeclients `pooled` via `with checkout(p) as c: c.m(x)`",
            "with checkout(p) as c:\n    c.m(x)",
            _pooled,
            baseline=LIFO_POOL,
            teardown=_dispose_proxy,
        ),
        Case(
            GUARDED,
            "safeclients `guarded` (detector)",
            "p.m(x)",
            _guarded,
            teardown=_dispose_proxy,
            threaded=False,
        ),
    ]


def contended_extra_cases() -> list[Case]:
    """Pools with one slot per contending thread: lock contention without slot waits."""
    return [
        Case(
            "lifo_pool_8",
            f"`queue.LifoQueue` pool with pid check, size {CONTENDED_THREADS}",
            POOL_STMT,
            _lifo_pool_per_thread,
        ),
        Case(
            "pooled_8",
            f"safeclients `pooled`, size {CONTENDED_THREADS}",
            "p.m(x)",
            _pooled_per_thread,
            baseline="lifo_pool_8",
            teardown=_dispose_proxy,
        ),
    ]
