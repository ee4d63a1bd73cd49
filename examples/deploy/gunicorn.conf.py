"""gunicorn settings for the Gearman examples: the gthread worker, 2 processes x 8 threads.

    GEARMAN_SERVERS=127.0.0.1:4730 .venv/bin/gunicorn -c examples/deploy/gunicorn.conf.py \\
        examples.gearman.app_per_thread:application
    GUNICORN_PRELOAD=1 ...   the same, with preload_app = True

Globals and forks: by default gunicorn imports the app in each worker AFTER the fork, so
module-globals are built per worker (each worker has its own client) and only threads share
them. With ``preload_app = True`` the master imports the app once BEFORE forking, as uWSGI does
by default: every worker inherits the globals the import built, including an open socket (the
fork trap). gunicorn forks with ``os.fork()``, so ``os.register_at_fork`` hooks do run in its
workers. Either way the 8 threads of a worker share every global: a plain global client is the
trap; the safeclients proxies are not.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = 2
threads = 8
preload_app = os.environ.get("GUNICORN_PRELOAD", "0") == "1"
graceful_timeout = 5
timeout = 60
