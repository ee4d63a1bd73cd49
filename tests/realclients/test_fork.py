"""A fork child never closes, finalizes or writes to an inherited instance (``_fork.keep``).

For each real client (mysqlclient, PyMySQL, psycopg2, psycopg 3, pika, redis-py, pymemcache,
smtplib, ftplib) and each policy, ``tests/realclients/forked_parent.py`` runs as its own
process: it connects through a proxy, forks a child that uses the proxy and one that does not,
each ending with an ordinary interpreter exit, and after each child queries again. The
parent's next query must succeed on the very connection it had: mysqlclient's finalizer
(``mysql_close``: ``COM_QUIT``) and libpq's (``PQfinish``: Terminate) would otherwise end the
parent's session from the child.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from examples.support.backends import Backend

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVER = {
    "pymysql": "mariadb",
    "mysqlclient": "mariadb",
    "psycopg2": "postgresql",
    "psycopg": "postgresql",
    "pika": "rabbitmq",
    "redis": "redis_server",
    "pymemcache": "memcached",
    "smtplib": "smtp_server",
    "ftplib": "ftp_server",
}


@pytest.mark.parametrize("driver", sorted(SERVER))
def test_parent_keeps_its_connection_when_children_use_and_exit(
    request: pytest.FixtureRequest, driver: str
) -> None:
    server = request.getfixturevalue(SERVER[driver])
    if isinstance(server, Backend):
        params = server.params
    else:  # memcached, the SMTP and FTP servers: no params of their own
        params = {"host": server.host, "port": server.port}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.realclients.forked_parent",
            driver,
            json.dumps(params),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and len(results) == 4, done.stdout + done.stderr
    broken = [f"{r['policy']}: {r['error']}" for r in results if not r["ok"]]
    assert not broken, f"{driver}: the parent lost its connection after a child: {broken}"
