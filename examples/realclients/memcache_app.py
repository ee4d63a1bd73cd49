"""pymemcache + memcached, written as a user writes it: a module-global ``Client``.

    MEMCACHED_URL=memcached://127.0.0.1:PORT \\
    SAFECLIENTS_EXAMPLE_POLICY=pooled python -m server examples.realclients.memcache_app:application

``pymemcache.client.base.Client`` is one socket without a lock (pymemcache points to
``PooledClient`` for threads; the PYMEMCACHE profile). ``SAFECLIENTS_EXAMPLE_POLICY`` picks how
the global ``cache`` is made (:func:`~examples.realclients._wsgi.policy_client`);
``pooled_check`` passes the profile's own check (``version()``). Each request sets its own key
to its token and reads it back. The ``version()`` at import touches the client.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pymemcache.client.base import Client  # type: ignore[import-untyped]
from pymemcache.exceptions import MemcacheError  # type: ignore[import-untyped]

from examples.realclients._wsgi import (
    env_url,
    make_application,
    policy_client,
    policy_from_env,
    profile_check,
)

POLICY = policy_from_env()


def connect() -> Client:
    url = urlsplit(env_url("MEMCACHED_URL"))
    return Client((url.hostname or "127.0.0.1", url.port or 11211), connect_timeout=5, timeout=5)


cache = policy_client(POLICY, connect, profile_check("pymemcache.client.base.Client"))
cache.version()  # at import, as apps do (this opens the first connection, in the master)


def item(n: int, token: str) -> str:
    key = f"safeclients-example:{token}"
    cache.set(key, token, expire=60, noreply=False)
    value = cache.get(key)
    return value.decode() if isinstance(value, bytes) else str(value)


application = make_application(
    item, client=cache, policy=POLICY, backend_errors=(MemcacheError, OSError)
)
