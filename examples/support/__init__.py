"""Helpers that start real daemons and app servers on free loopback ports, stopped by PID.

Importable without pytest, so examples and benchmarks use them from a clone after
``scripts/bootstrap.sh``; the test suite wraps them in session fixtures (``tests/conftest.py``).
One module per daemon, over one toolkit:

* :mod:`examples.support.processes`: free ports below the ephemeral range, port probes, polling,
  starting a daemon in its own session, stopping it by PID then its group, reading its log;
* :mod:`examples.support.gearmand`: gearmand and reverse workers;
* :mod:`examples.support.memcached`: memcached;
* :mod:`examples.support.servers`: real uWSGI and gunicorn running a WSGI app;
* :mod:`examples.support.backends`: MariaDB, PostgreSQL, RabbitMQ and Redis, each in a temp dir.
"""
