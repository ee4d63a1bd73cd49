"""Three real clients shared by 16 threads, unwrapped and under each safeclients policy.

``sqlite_ledger`` (a file database), ``http_keepalive`` (http.client against a WSGI app) and
``memcache_values`` (pymemcache's base Client against memcached) each run the same unit of work
from 16 threads released together, and count what went wrong. ``hammer`` is the shared harness.
The tests in tests/clients drive these modules; each also runs from the command line:

    python -m examples.clients.sqlite_ledger /tmp/ledger.db
    python -m examples.clients.memcache_values 127.0.0.1:11211
    python -m examples.clients.http_keepalive http://127.0.0.1:8000
"""
