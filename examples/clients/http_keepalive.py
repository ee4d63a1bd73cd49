"""http.client: 16 threads send requests through one keep-alive HTTPConnection.

An ``HTTPConnection`` is one request/response state machine over one socket ("a second request
may not be started until {response-headers-read}", Lib/http/client.py). Shared by 16 threads it
raises CannotSendRequest and ResponseNotReady, or hands a thread the response to another
thread's request. Each unit of work here is request + getresponse + read, so ``locked`` and
``pooled`` hold the connection for it with ``safeclients.checkout`` (see ``hammer.unit``).

    python -m examples.clients.http_keepalive http://127.0.0.1:8000 [--policy all]
(against ``python -m server examples.clients.echo_app:application``).
"""

from __future__ import annotations

import argparse
import http.client
from urllib.parse import urlsplit

from examples.clients.hammer import POLICIES, Tally, build, hammer, observe, release, unit

#: Socket timeout; a thread whose response another thread read only gets out by timing out.
TIMEOUT = 10.0


def connect(base_url: str, *, timeout: float = TIMEOUT) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)


def echo(conn: http.client.HTTPConnection, thread: int, op: int) -> bool:
    """One request and its response; True when the body is this request's message."""
    msg = f"thread-{thread}-op-{op}"
    conn.request("GET", f"/echo?msg={msg}")
    response = conn.getresponse()
    body = response.read()
    return response.status == 200 and body == msg.encode()


def run(
    policy: str,
    base_url: str,
    *,
    threads: int = 16,
    ops: int = 30,
    timeout: float = TIMEOUT,
    deadline: float = 60.0,
) -> Tally:
    client = build(policy, lambda: connect(base_url, timeout=timeout))

    def work(thread: int, op: int) -> bool:
        with unit(policy, client) as conn:
            return echo(conn, thread, op)

    try:
        tally = hammer(work, threads=threads, ops=ops, deadline=deadline)
        observe(policy, client, tally)
    finally:
        release(policy, client)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="base URL of a server running examples.clients.echo_app")
    parser.add_argument("--policy", default="all", choices=("all", *POLICIES))
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--ops", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=2.0, help="socket timeout, seconds")
    args = parser.parse_args()
    for policy in POLICIES if args.policy == "all" else (args.policy,):
        tally = run(
            policy,
            args.url,
            threads=args.threads,
            ops=args.ops,
            timeout=args.timeout,
            deadline=30.0,
        )
        print(f"{policy:<11} {tally.summary()}")
        for example in tally.examples[:2]:
            print(f"{'':<11} e.g. {example}")


if __name__ == "__main__":
    main()
