"""A tiny raw-socket HTTP client for the server tests: exact bytes out, exact framing checked."""

from __future__ import annotations

import dataclasses
import socket
import time


@dataclasses.dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-cased names; repeated fields joined with ", "
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Client:
    """One connection to the server under test; every wait has a timeout."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _read_until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            if not self._fill():
                return None
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise ConnectionError(
                    f"connection closed with {len(self.buffer)} of {n} body bytes"
                )
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_response(self, *, head_request: bool = False) -> Response | None:
        """The next response, or None if the server closed the connection before one began."""
        head = self._read_until(b"\r\n\r\n")
        if head is None:
            return None
        status_line, *lines = head.decode("latin-1").split("\r\n")
        _, code, reason = (status_line.split(" ", 2) + [""])[:3]
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        status = int(code)
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = self._read_chunked()
        else:
            while self._fill():
                pass
            body, self.buffer = self.buffer, b""
        return Response(status, reason, headers, body, head)

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            size_line = self._read_until(b"\r\n")
            if size_line is None:
                raise ConnectionError("connection closed inside a chunked body")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self._read_until(b"\r\n")
                return body
            body += self._read_exact(size)
            assert self._read_exact(2) == b"\r\n"

    def closed_by_server(self, timeout: float) -> bool:
        """True if the server closes (EOF or reset) within ``timeout`` without sending more."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def get(
    host: str, port: int, path: str = "/hello", *, retries: int = 0, timeout: float = 10.0
) -> Response:
    """One GET on a fresh connection; retry (idempotent) on connection errors, as a client would."""
    for attempt in range(retries + 1):
        try:
            with Client(host, port, timeout) as client:
                client.send(
                    f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()
                )
                response = client.read_response()
            if response is not None:
                return response
        except (ConnectionError, TimeoutError):
            if attempt == retries:
                raise
        time.sleep(0.05 * (attempt + 1))  # retry backoff, as a real client does; not a sync point
    raise ConnectionError(f"no response for GET {path} after {retries + 1} attempts")
