"""Mosquitto (Debian's ``mosquitto``), an MQTT broker, for paho-mqtt apps.

``mosquitto -c`` runs in the foreground with a config written to the scratch directory: one
listener on 127.0.0.1, anonymous clients allowed, no persistence, its log in the scratch
directory. Readiness is a paho-mqtt connect and disconnect (a CONNACK round trip).

Server-side views: Mosquitto has no admin command to count or close client connections, so
:meth:`connection_count` and :meth:`kill_all_connections` are not offered (``NotImplementedError``);
a restart (``stop()`` then ``start()``, same port) is how a test cuts every connection. It is
therefore not in ``BACKENDS`` (whose launchers all offer both).
"""

from __future__ import annotations

import shutil
from typing import Any

from ._base import Backend
from .errors import BackendAdminError


class Mosquitto(Backend):
    name = "mosquitto"
    package = "mosquitto"
    system_user = "mosquitto"

    @classmethod
    def binary(cls) -> str:
        return shutil.which("mosquitto") or "/usr/sbin/mosquitto"

    def _command(self) -> list[str]:
        config = self.scratch / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {self.scratch / 'mosquitto.log'}\n"
        )
        return [self.binary(), "-c", str(config)]

    def _ping(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        try:
            code = client.connect(self.host, self.port, keepalive=10)
            if code != 0:
                raise BackendAdminError(f"mosquitto refused the connection: code {code}")
        finally:
            client.disconnect()

    @property
    def params(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"
