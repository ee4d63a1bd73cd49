"""paho-mqtt + Mosquitto, written as a user writes it: a module-global client with its network
thread (``loop_start()``), connected at import.

    MQTT_URL=mqtt://127.0.0.1:PORT \\
    SAFECLIENTS_EXAMPLE_POLICY=pooled python -m server examples.realclients.mqtt_app:application

paho's client is thread-safe, but its network thread runs only in the process that started it:
a forked worker's inherited client queues publishes to nobody (the PAHO_MQTT profile).
``SAFECLIENTS_EXAMPLE_POLICY`` picks how the global ``mqtt`` is made
(:func:`~examples.realclients._wsgi.policy_client`); ``pooled_check`` passes the profile's own
check (the network thread runs here, the client is connected). Each request publishes its token
on ``safeclients-proof/<token>`` with QoS 1 and waits (bounded) for the broker's PUBACK; the
answer is the token once acknowledged. The proof's subscriber counts each token delivered.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from examples.realclients._wsgi import (
    env_url,
    make_application,
    policy_client,
    policy_from_env,
    profile_check,
)

POLICY = policy_from_env()
TOPIC = "safeclients-proof"
WAIT = 2.0  # seconds for a CONNACK or a PUBACK: under the load driver's request timeout


class NotPublished(ConnectionError):
    """The broker did not acknowledge a publish (or a connection) within ``WAIT`` seconds."""


def connect() -> paho.Client:
    url = urlsplit(env_url("MQTT_URL"))
    client = paho.Client(CallbackAPIVersion.VERSION2)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)
    client.loop_start()
    if not connected.wait(WAIT):
        client.loop_stop()
        raise NotPublished(f"no CONNACK from {url.netloc} within {WAIT:g} s")
    return client


mqtt: Any = policy_client(POLICY, connect, profile_check("paho.mqtt.client.Client"))
mqtt.is_connected()  # at import, as apps do (this connects the first client, in the master)


def item(n: int, token: str) -> str:
    info = mqtt.publish(f"{TOPIC}/{token}", token, qos=1)
    info.wait_for_publish(timeout=WAIT)
    if not info.is_published():
        raise NotPublished(f"no PUBACK for {token} within {WAIT:g} s (rc {info.rc})")
    return token


application = make_application(
    item, client=mqtt, policy=POLICY, backend_errors=(OSError, ValueError, RuntimeError)
)
