"""An SMTP server (aiosmtpd) for the real-client tests and the proof harness (imports no pytest).

:class:`SmtpServer` serves on a free loopback port in aiosmtpd's own thread of the calling
process; ``restart()`` cuts every session and serves again on the same port (a new
``Controller``: one cannot be started twice). :class:`SmtpHandler` delivers, refuses
``nobody@`` with 550, answers 421 to ``shutdown@`` (smtplib then closes its session), answers
NOOP with 421 and closes the session once ``time_out`` is set (an idle timeout: Postfix's
smtpd_timeout, Exim's smtp_receive_timeout), and counts what it delivered.

Runs in the calling process: ``start``/``stop``/``restart`` block the calling thread; the
handler's coroutines run on aiosmtpd's loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from .processes import HOST, free_port

READY_TIMEOUT = 10.0


class SmtpHandler:
    """aiosmtpd's handler; ``delivered`` lists each message's recipients, ``deliveries()``
    counts messages per recipient local part (the proof's tokens)."""

    def __init__(self) -> None:
        self.time_out = threading.Event()
        self.delivered: list[list[str]] = []
        self.lock = threading.Lock()  # guards delivered (the server's loop thread appends)

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        if self.time_out.is_set():
            self.time_out.clear()
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.4.2 Timeout exceeded, closing connection"
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        if address.startswith("shutdown@"):
            return "421 4.3.2 Service shutting down"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.delivered.append(list(envelope.rcpt_tos))
        return "250 Message accepted"

    def deliveries(self) -> Counter[str]:
        """Messages delivered per recipient local part."""
        with self.lock:
            return Counter(rcpt.partition("@")[0] for rcpts in self.delivered for rcpt in rcpts)


class SmtpServer:
    """aiosmtpd on a free loopback port; ``restart()`` serves again on the same port."""

    def __init__(self, handler: SmtpHandler | None = None) -> None:
        self.handler = handler or SmtpHandler()
        self.host = HOST
        self.port = free_port()
        self.controller: Any = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def factory(self) -> Any:
        import smtplib

        return smtplib.SMTP(self.host, self.port, timeout=10)

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller

        self.controller = Controller(
            self.handler, hostname=self.host, port=self.port, ready_timeout=READY_TIMEOUT
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every session; idempotent."""
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def deliveries(self) -> Counter[str]:
        """The handler's count of messages per recipient token."""
        return self.handler.deliveries()
