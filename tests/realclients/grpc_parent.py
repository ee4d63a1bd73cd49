"""A process that serves gRPC and calls itself through a ``per_process`` channel proxy; run by
tests/realclients/test_grpc.py.

``python -m tests.realclients.grpc_parent``: starts a gRPC server (grpcio's own, on a free
loopback port) with one echo method, makes ``safeclients.per_process`` over
``grpc.insecure_channel``, then: N calls (each answer must echo its own request); a fork whose
child calls through the proxy (its own channel, made after the fork) and exits the ordinary way;
N calls again from the parent; the server stopped and started again on the same port; N calls.
Prints one JSON object with the counts. A separate process: gRPC and ``fork()`` in the pytest
process would leave gRPC's threads behind in pytest's own children.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import grpc  # type: ignore[import-untyped]

import safeclients
from examples.support.grpc_echo import METHOD, serve
from examples.support.processes import free_port

CALLS = 50


def calls(proxy: Any, tag: str) -> dict[str, int]:
    """CALLS echo calls through the proxy (a stub's multi-callable per call, as stubs do)."""
    counts = {"ok": 0, "wrong": 0, "failed": 0}
    for n in range(CALLS):
        request = f"{tag}-{os.getpid()}-{n}".encode()
        try:
            answer = proxy.unary_unary(METHOD)(request, timeout=5)
        except grpc.RpcError:
            counts["failed"] += 1
            continue
        counts["ok" if answer == request else "wrong"] += 1
    return counts


def main() -> None:
    port = free_port()
    server = serve(port)
    proxy = safeclients.per_process(lambda: grpc.insecure_channel(f"127.0.0.1:{port}"))
    report: dict[str, Any] = {"before": calls(proxy, "before")}
    pid = os.fork()
    if pid == 0:
        child = calls(proxy, "child")
        sys.exit(0 if child["ok"] == CALLS else 3)
    _, status = os.waitpid(pid, 0)
    report["child_status"] = os.waitstatus_to_exitcode(status)
    report["after_fork"] = calls(proxy, "after-fork")
    server.stop(None).wait(10)
    server = serve(port)
    report["after_restart"] = calls(proxy, "after-restart")
    report["created"] = safeclients.stats(proxy).created
    server.stop(None).wait(10)
    safeclients.dispose(proxy)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
