"""What the proof harness needs of a backend, and adapters for the servers it restarts.

:mod:`examples.realclients.prove` runs a case against a :class:`Target`: its ``url`` (the app's
URL variable), ``connection_count()`` (client connections the server holds, or None where the
server cannot say) and ``kill_all_connections()`` (cut every client connection: killed
server-side, or the server restarted on the same port; how many, or None). The launchers of
``examples.support.backends`` (MariaDB, PostgreSQL, RabbitMQ, Redis) are targets as they are.
A target that also offers ``deliveries()`` (a :class:`Delivering`: how many times each token
reached the server) lets the harness check that every answered request's message arrived once.

The adapters here restart a server that has no admin command to count or kill connections:
SMTP (aiosmtpd), FTP (pyftpdlib), memcached, gRPC (an echo server of our own,
``examples.support.grpc_echo``) and Mosquitto (whose deliveries a subscriber of the harness's
own counts: :class:`MqttTarget`). Runs in the harness's process (a test session's main thread
or the script); the subscriber's callbacks run on paho's network thread.
"""

from __future__ import annotations

import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from examples.support.backends.mosquitto import Mosquitto
from examples.support.ftp import FtpServer
from examples.support.grpc_echo import GrpcEcho
from examples.support.memcached import Memcached
from examples.support.smtp import SmtpServer

WAIT = 10.0  # seconds: the subscriber's connect and subscribe, each
TOPIC = "safeclients-proof"  # the apps publish each token on TOPIC/<token>


class ProofTargetError(RuntimeError):
    """A target did not come back (no subscription after a broker restart)."""


class Target(Protocol):
    @property
    def url(self) -> str: ...

    def connection_count(self) -> int | None: ...

    def kill_all_connections(self) -> int | None: ...


@runtime_checkable
class Delivering(Protocol):
    def deliveries(self) -> Counter[str]: ...


class Restartable(Protocol):
    @property
    def url(self) -> str: ...

    def restart(self) -> object: ...


class DeliveringServer(Restartable, Delivering, Protocol):
    """A restartable server that counts what it received per token."""


class Restarted:
    """A server whose connections are cut by restarting it on the same port; it counts no
    connections. Its deliveries are the server's own, when it counts them."""

    def __init__(self, server: Restartable) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    def connection_count(self) -> int | None:
        return None

    def kill_all_connections(self) -> int | None:
        self.server.restart()
        return None


class DeliveringRestarted(Restarted):
    """:class:`Restarted` over a server that counts what it received per token."""

    def __init__(self, server: DeliveringServer) -> None:
        super().__init__(server)
        self.counted = server

    def deliveries(self) -> Counter[str]:
        return self.counted.deliveries()


class MqttTarget:
    """Mosquitto restarted on the same port; a subscriber of its own (QoS 1, ``TOPIC/#``)
    counts each token delivered. After a restart the subscriber's network thread reconnects
    and subscribes again; :meth:`kill_all_connections` returns once it has (so a message
    published after it can be counted)."""

    def __init__(self, broker: Mosquitto) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.broker = broker
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()  # guards seen (paho's network thread counts)
        self.subscribed = threading.Event()  # set by the SUBACK of each (re)connection
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, *_: c.subscribe(f"{TOPIC}/#", qos=1)
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.on_message = self._message
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client = client
        client.connect(broker.host, broker.port, keepalive=10)
        client.loop_start()
        self._wait_subscribed("the first connection")

    @property
    def url(self) -> str:
        return self.broker.url

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.seen[message.topic.rpartition("/")[2]] += 1

    def _wait_subscribed(self, when: str) -> None:
        if not self.subscribed.wait(WAIT):
            raise ProofTargetError(
                f"the proof's MQTT subscriber got no SUBACK in {WAIT:g} s after {when}"
            )

    def connection_count(self) -> int | None:
        return None

    def kill_all_connections(self) -> int | None:
        self.subscribed.clear()
        self.broker.restart()
        self._wait_subscribed("the broker's restart")
        return None

    def deliveries(self) -> Counter[str]:
        with self.lock:
            return Counter(self.seen)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def started_target(name: str) -> Iterator[Target]:
    """The target ``name`` (``smtp``, ``ftp``, ``memcached``, ``grpc``, ``mosquitto``)
    started for a run of the harness as a script, stopped (by PID, or its thread joined) when
    the block ends."""
    with ExitStack() as stack:
        if name == "smtp":
            smtp = SmtpServer().start()
            stack.callback(smtp.stop)
            yield DeliveringRestarted(smtp)
        elif name == "ftp":
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="safeclients-ftp-")))
            ftp = FtpServer(root).start()
            stack.callback(ftp.stop)
            yield DeliveringRestarted(ftp)
        elif name == "memcached":
            yield Restarted(MemcachedUrl(stack.enter_context(Memcached())))
        elif name == "grpc":
            yield Restarted(stack.enter_context(GrpcEcho()))
        elif name == "mosquitto":
            broker = Mosquitto()
            stack.callback(broker.close)
            broker.start()
            mqtt = MqttTarget(broker)
            stack.callback(mqtt.close)
            yield mqtt
        else:
            raise ValueError(f"no proof target named {name!r}")


class MemcachedUrl:
    """A :class:`Memcached` launcher seen as a restartable server with a URL."""

    def __init__(self, memcached: Memcached) -> None:
        self.memcached = memcached

    @property
    def url(self) -> str:
        return f"memcached://{self.memcached.address}"

    def restart(self) -> object:
        return self.memcached.restart()
