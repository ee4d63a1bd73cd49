"""paho-mqtt through a proxy on a real Mosquitto: every message delivered once, across a broker
restart and across a fork (the profile in ``safeclients._profile_table``: PAHO_MQTT).

The proxy's client runs paho's network thread (``loop_start``); a subscriber of the test's own
counts what the broker delivers. After a restart the profile's check (the network thread runs
here, the client is connected) replaces a client that lost its broker before the next publish.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from typing import Any

import pytest

import safeclients
from examples.support.backends import Backend

pytestmark = pytest.mark.integration

WAIT = 10.0  # seconds any one network wait may take


def _connected_client(server: Backend, on_connect: Any = None) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    ready = threading.Event()

    def connected(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if on_connect is not None:
            on_connect(client)
        ready.set()

    client.on_connect = connected
    client.connect(server.params["host"], server.params["port"], keepalive=10)
    client.loop_start()
    if not ready.wait(WAIT):
        client.loop_stop()
        raise TimeoutError(f"no CONNACK from mosquitto within {WAIT:g} s")
    return client


class Subscriber:
    """Counts the payloads delivered on ``topic`` (paho's network thread appends)."""

    def __init__(self, server: Backend, topic: str) -> None:
        self.topic = topic
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()  # guards seen
        self.arrived = threading.Condition(self.lock)
        self.subscribed = threading.Event()  # the broker's SUBACK: messages reach us from now on
        self.client = _connected_client(server, on_connect=self._subscribe)
        self.client.on_message = self._message
        if not self.subscribed.wait(WAIT):
            self.close()
            raise TimeoutError(f"no SUBACK from mosquitto within {WAIT:g} s")

    def _subscribe(self, client: Any) -> None:
        client.on_subscribe = lambda *args: self.subscribed.set()
        client.subscribe(self.topic, qos=1)

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.arrived:
            self.seen[message.payload.decode()] += 1
            self.arrived.notify_all()

    def wait_for(self, payloads: list[str]) -> Counter[str]:
        with self.arrived:
            self.arrived.wait_for(lambda: all(self.seen[p] for p in payloads), timeout=WAIT)
            return Counter(self.seen)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish(proxy: Any, topic: str, payloads: list[str]) -> int:
    failures = 0
    for payload in payloads:
        try:
            info = proxy.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout=WAIT)
        except Exception:
            failures += 1
    return failures


def test_mqtt_publishes_once_across_a_broker_restart(mosquitto: Any) -> None:
    topic = f"safeclients/{uuid.uuid4().hex}"
    proxy = safeclients.per_process(lambda: _connected_client(mosquitto), check_interval=0)
    subscriber = Subscriber(mosquitto, topic)
    try:
        first = [f"a{n}" for n in range(20)]
        assert _publish(proxy, topic, first) == 0
        mosquitto.restart()  # same port: other session users keep their address
        subscriber.close()
        subscriber = Subscriber(mosquitto, topic)
        second = [f"b{n}" for n in range(20)]
        failures = _publish(proxy, topic, second)
        seen = subscriber.wait_for(second)
        assert failures == 0, f"{failures} publishes failed after the restart (a check is on)"
        assert all(seen[p] == 1 for p in second), f"not delivered once each: {seen}"
    finally:
        subscriber.close()
        safeclients.dispose(proxy)


def test_mqtt_child_publishes_with_its_own_client_and_the_parents_still_works(
    mosquitto: Any,
) -> None:
    topic = f"safeclients/{uuid.uuid4().hex}"
    proxy = safeclients.per_process(lambda: _connected_client(mosquitto))
    subscriber = Subscriber(mosquitto, topic)
    try:
        assert _publish(proxy, topic, ["parent-1"]) == 0
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _publish(proxy, topic, ["child-1"])
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child's publish failed"
        assert _publish(proxy, topic, ["parent-2"]) == 0
        seen = subscriber.wait_for(["parent-1", "child-1", "parent-2"])
        assert seen == Counter({"parent-1": 1, "child-1": 1, "parent-2": 1}), seen
    finally:
        subscriber.close()
        safeclients.dispose(proxy)
