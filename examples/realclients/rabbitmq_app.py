"""pika + RabbitMQ, written as a user writes it: a module-global BlockingConnection, channels.

    AMQP_URL=amqp://guest:guest@127.0.0.1:PORT/%2F \\
    SAFECLIENTS_EXAMPLE_POLICY=pooled python -m server examples.realclients.rabbitmq_app:application

``SAFECLIENTS_EXAMPLE_POLICY`` picks how the global ``connection`` is made: ``unsafe`` (one
``pika.BlockingConnection`` at import; pika's FAQ: "Pika does not have any notion of threading
in the code ... do not share connections or channels across threads"), or a factory decorated
with ``@safeclients.per_thread``, ``@safeclients.locked``, ``@safeclients.pooled(size=4)``, or
(``pooled_check``) ``@safeclients.pooled(size=4, check=alive)``.

Each request does a checkable round trip on a channel of that connection: declare a queue named
after the request's token (the broker's ``Queue.DeclareOk`` names it back), publish the token to
it, ``basic_get`` it back, delete the queue. The queue declare at import touches the client.
Heartbeats are off (``heartbeat=0``): a BlockingConnection only answers them while it is used.
"""

from __future__ import annotations

import pika
import pika.exceptions

import safeclients
from examples.realclients._wsgi import POOL_SIZE, env_url, make_application, policy_from_env

POLICY = policy_from_env()
QUEUE_PREFIX = "safeclients-example"


def connect() -> pika.BlockingConnection:
    params = pika.URLParameters(env_url("AMQP_URL"))
    params.heartbeat = 0
    params.socket_timeout = 5
    params.blocked_connection_timeout = 5
    params.connection_attempts = 1
    return pika.BlockingConnection(params)


def alive(conn: pika.BlockingConnection) -> bool:
    """The health check: process pending I/O without waiting; a connection the broker closed
    raises ``ConnectionClosedByBroker`` here (or is no longer open)."""
    conn.process_data_events(time_limit=0)
    if not conn.is_open:
        raise pika.exceptions.ConnectionWrongStateError("connection is closed")
    return True


if POLICY == "unsafe":
    connection = connect()
elif POLICY == "per_thread":

    @safeclients.per_thread
    def connection() -> pika.BlockingConnection:
        return connect()
elif POLICY == "locked":

    @safeclients.locked
    def connection() -> pika.BlockingConnection:
        return connect()
elif POLICY == "pooled":

    @safeclients.pooled(size=POOL_SIZE)
    def connection() -> pika.BlockingConnection:
        return connect()
else:  # pooled_check

    @safeclients.pooled(size=POOL_SIZE, check=alive)
    def connection() -> pika.BlockingConnection:
        return connect()


# Declare the app's queue at import, as apps do (this opens the first connection, in the master).
_setup = connection.channel()
_setup.queue_declare(queue=QUEUE_PREFIX, durable=False)
_setup.close()


def item(n: int, token: str) -> str:
    channel = connection.channel()
    try:
        name = f"{QUEUE_PREFIX}.{token}"
        declared = channel.queue_declare(queue=name, auto_delete=True)
        if declared.method.queue != name:
            return f"declare-ok named {declared.method.queue}"
        channel.basic_publish(exchange="", routing_key=name, body=token.encode())
        method, _props, body = channel.basic_get(queue=name, auto_ack=True)
        channel.queue_delete(queue=name)
        return body.decode() if method is not None and body is not None else ""
    finally:
        if channel.is_open:
            channel.close()


application = make_application(
    item, client=connection, policy=POLICY, backend_errors=(pika.exceptions.AMQPError, OSError)
)
