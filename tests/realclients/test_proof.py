"""The proof (issues 11 and 19): real clients under our server and real uWSGI, 2 workers x 8
threads.

For PyMySQL and mysqlclient + MariaDB, psycopg2 and psycopg 3 + PostgreSQL, pika + RabbitMQ,
redis-py + Redis, smtplib + aiosmtpd, ftplib + pyftpdlib, pymemcache + memcached, paho-mqtt +
Mosquitto and gRPC + grpcio's server, each app of ``examples/realclients`` (a module-global
client, the driver's ordinary calling code, no ``checkout()``, touched at import) runs under
each server with each variant; the harness (:mod:`examples.realclients.prove`) sends a bounded
checked load, cuts every backend connection (killed server-side where the backend can, else
the backend restarted on its port: :mod:`examples.realclients.targets`), sends more, and stops
the server. Asserted, per case:

* the unsafe global fails (wrong results or errors) in a bounded run, retried once (not for
  gRPC, whose pre-fork channel answered every call here: ``Client.trap``);
* each policy gives 0 wrong results and 0 errors before the cut;
* after the cut at most one failed request per instance held (over 2 x 100 requests; where
  the backend cannot count connections, per instance the policy may hold): each instance
  meets its dead connection once, then heals; with ``check=`` (``pooled_check``) none (gRPC:
  one per instance, ``Client.check_heals``);
* the connections held at the backend are between one per worker and what the policy promises
  (per worker: per_thread 8, locked 1, pooled 4; plus the master's import-time one), and 0
  remain once the app server has stopped (for the backends that count them);
* every answered request's message reached the backend exactly once (SMTP, FTP, MQTT: the
  backends that count deliveries).

Every shortfall is named in one message (:func:`broken_promises`), with the case's counts and
the end of the app server's log. The results table is printed at the end of the session.
"""

from __future__ import annotations

import pytest

from examples.realclients._wsgi import POLICIES
from examples.realclients.prove import (
    CLIENTS,
    HEADER,
    SERVERS,
    CaseResult,
    broken_promises,
    run_case,
)
from examples.realclients.targets import Target

pytestmark = pytest.mark.integration

FIXTURE = {
    "mariadb": "mariadb",
    "postgresql": "postgresql",
    "rabbitmq": "rabbitmq",
    "redis": "redis_server",
    "smtp": "smtp_target",
    "ftp": "ftp_target",
    "memcached": "memcached_target",
    "mosquitto": "mqtt_target",
    "grpc": "grpc_target",
}
UNSAFE_ATTEMPTS = 2

RESULTS: list[CaseResult] = []


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_real_client(client: str, policy: str, server: str, request: pytest.FixtureRequest) -> None:
    spec = CLIENTS[client]
    backend: Target = request.getfixturevalue(FIXTURE[spec.backend])
    attempts = UNSAFE_ATTEMPTS if policy == "unsafe" else 1
    for _ in range(attempts):
        result = run_case(spec, policy, server, backend)
        broken = broken_promises(result, trap=spec.trap, check_heals=spec.check_heals)
        if not broken:
            break
    RESULTS.append(result)
    assert not broken, (
        f"{client} {policy} under {server}: "
        + "; ".join(broken)
        + f"\n{HEADER}\n{result.row()}\nexamples before: {result.before.examples}"
        + f"\nexamples after the kill: {result.settled.examples or result.after.examples}"
        + f"\napp server log (end):\n{result.log_tail[-1500:]}"
    )


def results_table() -> str:
    return "\n".join([HEADER, *(r.row() for r in RESULTS)]) if RESULTS else ""
