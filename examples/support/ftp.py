"""An FTP server (pyftpdlib) for the real-client tests and the proof harness (imports no pytest).

:class:`FtpServer` serves ``root`` to an anonymous user (who may read and write) on a free
loopback port, in a thread of the calling process; ``close_next`` makes the next command of any
session get "421" and a closed connection (a server's idle timeout or shutdown); ``restart()``
cuts every session and serves again on the same port.

Runs in the calling process: ``start``/``stop``/``restart`` block the calling thread; the
server's loop runs on its thread ``ftp-server``.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from .processes import HOST, free_port

STOP_TIMEOUT = 30.0
#: pyftpdlib's permissions: list and read (elr), then write (adfmwMT): the proof stores files.
ANONYMOUS_PERMISSIONS = "elradfmwMT"


class FtpServerError(RuntimeError):
    """The FTP server's thread did not stop."""


class FtpServer:
    """pyftpdlib on a free loopback port; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = HOST
        self.port = free_port()
        self.close_next = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"ftp://{self.host}:{self.port}"

    def factory(self) -> Any:
        import ftplib

        ftp = ftplib.FTP()
        ftp.connect(self.host, self.port, timeout=10)
        ftp.login()
        return ftp

    def start(self) -> FtpServer:
        from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
        from pyftpdlib.handlers import FTPHandler  # type: ignore[import-untyped]
        from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]

        close_next = self.close_next

        class Handler(FTPHandler):  # type: ignore[misc]
            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                if close_next.is_set():
                    close_next.clear()
                    self.respond("421 Service not available, closing control connection.")
                    self.close_when_done()
                    return
                super().pre_process_command(line, cmd, arg)

        authorizer = DummyAuthorizer()
        with warnings.catch_warnings():  # "write permissions assigned to anonymous user": meant
            warnings.simplefilter("ignore", RuntimeWarning)
            authorizer.add_anonymous(str(self.root), perm=ANONYMOUS_PERMISSIONS)
        Handler.authorizer = authorizer
        self._server = FTPServer((self.host, self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"timeout": 0.05}, name="ftp-server"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every session; idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.close_all()  # ends serve_forever's loop
        if thread is not None:
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                raise FtpServerError(f"the FTP server's thread did not stop in {STOP_TIMEOUT:g} s")

    def restart(self) -> None:
        self.stop()
        self.start()

    def deliveries(self) -> Counter[str]:
        """Files stored under ``root`` per name stem (the proof stores ``<token>.txt``)."""
        return Counter(path.stem for path in self.root.glob("*.txt"))
