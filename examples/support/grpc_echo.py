"""A gRPC echo server (grpcio's own): one generic method, ``/safeclients.Echo/Echo``, that
answers each request's bytes back; and :class:`GrpcEcho`, its launcher (imports no pytest).

    python -m examples.support.grpc_echo --port PORT      # serves until SIGTERM

:func:`serve` starts the server in the calling process (its worker threads are gRPC's);
``tests/realclients/grpc_parent.py`` uses it directly. :class:`GrpcEcho` runs it as a child
process in its own session on a free loopback port (gRPC in the test process would leave its
threads in every child that process forks), waits for the port to answer (polled with a
bounded backoff), stops it by PID, and restarts it on the same port. Runs in the calling
process (the launcher's thread).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

from . import processes
from .processes import HOST, Daemon, port_answers, start_daemon

METHOD = "/safeclients.Echo/Echo"
REPO_ROOT = Path(__file__).resolve().parents[2]  # where ``examples`` is importable
START_TIMEOUT = 30.0


class GrpcEchoError(RuntimeError):
    """The echo server did not start (or not on its port again)."""


def serve(port: int, host: str = HOST, workers: int = 8) -> Any:
    """Start an echo server on ``host:port`` in this process; returns the ``grpc.Server``."""
    import grpc  # type: ignore[import-untyped]

    def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "safeclients.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(f"{host}:{port}") != port:
        raise GrpcEchoError(f"gRPC could not bind {host}:{port}")
    server.start()
    return server


class GrpcEcho(Daemon):
    """The echo server as a child process; ``start()``, ``restart()`` (same port), ``stop()``."""

    name = "grpc-echo"
    failure = GrpcEchoError

    @property
    def url(self) -> str:
        return f"grpc://{self.host}:{self.port}"

    def start(self) -> GrpcEcho:
        if not self.port:
            self.port = processes.free_port(self.host, error=GrpcEchoError)
        proc = start_daemon(
            [sys.executable, "-m", "examples.support.grpc_echo", "--port", str(self.port)],
            cwd=REPO_ROOT,
        )
        self._proc = proc
        processes.wait_until(
            lambda: proc.poll() is not None or port_answers(self.host, self.port),
            START_TIMEOUT,
            f"the gRPC echo server on port {self.port}",
            error=GrpcEchoError,
        )
        if proc.poll() is not None:
            self._proc = None
            raise GrpcEchoError(f"the gRPC echo server exited with {proc.returncode}")
        return self

    def restart(self) -> GrpcEcho:
        self.stop()
        return self.start()

    def stop(self) -> None:
        self._stop_daemon()

    def __enter__(self) -> GrpcEcho:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = serve(args.port)
    while not stop.wait(1.0):  # the SIGTERM handler sets it (runs in this, the main thread)
        pass
    server.stop(None).wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
