"""pymemcache: 16 threads each set their own keys and read them back through one Client.

pymemcache's base ``Client`` holds one socket and reads each reply from it without a lock, and
its documentation points threaded users to ``PooledClient``. Shared by 16 threads, a ``get``
can read the reply meant for another thread's command: a value of another key (wrong), or a
reply that doesn't parse (MemcacheUnknownError and friends).

    python -m examples.clients.memcache_values 127.0.0.1:11211 [--policy all] [--threads 16]
"""

from __future__ import annotations

import argparse

from pymemcache.client.base import Client  # type: ignore[import-untyped]

from examples.clients.hammer import POLICIES, Tally, build, hammer, observe, release

#: Socket timeout. A shared client loses replies (another thread read them), so the thread
#: waiting for one only gets out by timing out: keep it short when you expect the trap.
TIMEOUT = 10.0


def connect(address: str, *, timeout: float = TIMEOUT) -> Client:
    host, _, port = address.rpartition(":")
    return Client(
        (host, int(port)), connect_timeout=timeout, timeout=timeout, default_noreply=False
    )


def round_trip(client: Client, thread: int, op: int) -> bool:
    """Set this thread's key to a value only it writes, read it back, compare."""
    key = f"t{thread}-k{op % 8}"
    value = f"thread {thread} op {op} ".encode() * (1 + op % 5)
    client.set(key, value)
    return bool(client.get(key) == value)


def run(
    policy: str,
    address: str,
    *,
    threads: int = 16,
    ops: int = 100,
    timeout: float = TIMEOUT,
    deadline: float = 60.0,
) -> Tally:
    client = build(policy, lambda: connect(address, timeout=timeout))
    try:
        tally = hammer(
            lambda thread, op: round_trip(client, thread, op),
            threads=threads,
            ops=ops,
            deadline=deadline,
        )
        observe(policy, client, tally)
    finally:
        release(policy, client)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address", help="memcached HOST:PORT")
    parser.add_argument("--policy", default="all", choices=("all", *POLICIES))
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--ops", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1.0, help="socket timeout, seconds")
    args = parser.parse_args()
    for policy in POLICIES if args.policy == "all" else (args.policy,):
        tally = run(
            policy,
            args.address,
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
