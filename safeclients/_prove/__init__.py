"""The proving ground as a tool: ``python -m safeclients prove`` and the pytest plugin.

The public surface is :mod:`safeclients.prove` (``ProvingGround``, ``hammer``, the verdict) and
:mod:`safeclients.pytest_plugin`; the modules here are private:

* ``detector``: the reporting detector, a transparent proxy that records who calls a client
  (pid, thread, call site) into an event file, and never raises or serializes anything;
* ``slots``: finds the clients an app holds (module globals and one level down) and replaces
  them in place with detectors, before the fork;
* ``verdict``: reads the events back and says which client was used by two threads at once or
  in two processes;
* ``host``: the master process (imports the app, watches its clients, runs the server's master);
* ``ground``: starts and stops that process (a ``ProvingGround``); ``load``: the requests;
* ``hammer``: the helper that runs a callable from N threads and across a fork;
* ``cli``: the ``prove`` subcommand; ``errors``: what can go wrong, named.
"""
