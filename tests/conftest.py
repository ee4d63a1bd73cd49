"""Shared pytest configuration.

Fixtures that start real daemons live in ``tests/support/`` (one module per daemon) and are
registered here, so every test directory can use them.
"""

pytest_plugins = [
    "tests.support.gearmand",
    "tests.support.memcached",
]
