"""gunicorn settings for the ASGI examples: uvicorn's worker, 2 processes, one event loop each.

    REDIS_URL=redis://127.0.0.1:6379/0 SAFECLIENTS_EXAMPLE_FORM=per_loop \\
        .venv/bin/gunicorn -c examples/deploy/gunicorn_asgi.conf.py \\
        examples.asgi.redis_app:application
    GUNICORN_PRELOAD=1 ...   the same, with preload_app = True

The same as ``gunicorn -k uvicorn.workers.UvicornWorker -w 2 [--preload]``. uvicorn >= 0.30
deprecates ``uvicorn.workers`` in favour of the ``uvicorn-worker`` package (worker class
``uvicorn_worker.UvicornWorker``, the same settings); the module still ships, with a
``DeprecationWarning`` at import.

Globals, forks and loops: without preload each worker imports the app after the fork; with
``preload_app = True`` the master imports it once, before forking, and the workers inherit what
the import built. Either way the import runs outside the worker's loop: an import-time
``asyncio.run(client.ping())`` runs in a loop of its own, closed at once, and each worker then
serves every request as a task of its one loop (``asyncio.run`` in the worker, ended on SIGTERM:
its ``shutdown_asyncgens`` is where ``per_loop`` and ``pooled`` close what the loop made).
A plain global async client is bound to the loop it first ran in, and shared by every task:
``safeclients.per_loop`` or ``safeclients.pooled`` give each worker's loop its own.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
worker_class = "uvicorn.workers.UvicornWorker"
workers = 2
preload_app = os.environ.get("GUNICORN_PRELOAD", "0") == "1"
graceful_timeout = 5
timeout = 60
