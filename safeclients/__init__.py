"""safeclients: make a module-global, non-thread-safe client safe under threaded, pre-forking
servers (uWSGI, gunicorn gthread) by wrapping it (or a factory for it) in a proxy with a policy.

* ``per_thread(factory)``: each thread its own instance, closed when the thread ends;
* ``locked(obj_or_factory)``: one instance, every call under a re-entrant lock;
* ``pooled(factory, size=, timeout=)``: a bounded pool, one instance per call;
* ``guarded(obj_or_factory)``: no fix, a detector that names both threads of an overlap;
* ``per_process(factory)``: one instance per process, no lock (thread-safe, not fork-safe);
* ``per_loop(factory)``: each running event loop its own instance, for async clients.

All six are fork-safe (see ``safeclients._fork``) and usable as decorators on a zero-argument
factory. Control is module-level: ``checkout``, ``dispose``, ``stats``, ``is_proxy``.
"""

__version__ = "0.4.0"

from safeclients import _green  # noqa: F401  (subscribes to gevent's patch events)
from safeclients.control import checkout, dispose, is_proxy, policy_name, stats
from safeclients.errors import (
    AsyncUseError,
    CheckoutReused,
    ConcurrentUseError,
    CrossThreadUseError,
    DerivedUseError,
    FactoryError,
    ForkedUseError,
    InstanceDiscardedError,
    LockTimeout,
    NoRunningLoopError,
    OutlivedUseError,
    PoolClosed,
    PoolTimeout,
    SafeClientsError,
    SharedStateError,
    WouldBlockLoopError,
)
from safeclients.guarded import guarded
from safeclients.locked import locked
from safeclients.per_loop import per_loop
from safeclients.per_process import per_process
from safeclients.per_thread import per_thread
from safeclients.pooled import pooled
from safeclients.stats import Stats

__all__ = [
    "__version__",
    "per_thread",
    "per_process",
    "locked",
    "pooled",
    "guarded",
    "per_loop",
    "checkout",
    "dispose",
    "stats",
    "is_proxy",
    "policy_name",
    "Stats",
    "SafeClientsError",
    "FactoryError",
    "PoolTimeout",
    "LockTimeout",
    "PoolClosed",
    "CheckoutReused",
    "AsyncUseError",
    "DerivedUseError",
    "CrossThreadUseError",
    "OutlivedUseError",
    "InstanceDiscardedError",
    "SharedStateError",
    "ConcurrentUseError",
    "ForkedUseError",
    "NoRunningLoopError",
    "WouldBlockLoopError",
]
