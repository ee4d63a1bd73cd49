"""Helpers that start real daemons and app servers on free loopback ports, stopped by PID.

Importable without pytest, so examples and benchmarks use them from a clone after
``scripts/bootstrap.sh``; the test suite wraps them in session fixtures (``tests/conftest.py``).
One module per daemon:

* :mod:`examples.support.gearmand`: gearmand and reverse workers;
* :mod:`examples.support.memcached`: memcached;
* :mod:`examples.support.servers`: real uWSGI and gunicorn running a WSGI app;
* :mod:`examples.support.backends`: MariaDB, PostgreSQL, RabbitMQ and Redis, each in a temp dir.
"""
