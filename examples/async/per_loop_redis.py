"""One ``redis.asyncio.Redis`` per event loop: the module-global trap and the ``per_loop`` fix.

    redis-server --port 6390 --save '' --appendonly no &
    PYTHONPATH=. .venv/bin/python examples/async/per_loop_redis.py --port 6390          # per_loop
    PYTHONPATH=. .venv/bin/python examples/async/per_loop_redis.py --port 6390 --unsafe # global

Runs ``asyncio.run()`` 50 times in a row (a loop per task, as Celery tasks or tests do) and then
8 threads each with its own loop, 20 tasks per loop, every answer checked; prints the outcomes,
``safeclients.stats`` and how many connections the server still holds (``CLIENT LIST``).
(This folder is not a package: ``async`` is a keyword; run the file by its path.)
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import uuid
from collections import Counter

import redis
import redis.asyncio

import safeclients

NAME = f"per-loop-example-{uuid.uuid4().hex[:6]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--unsafe", action="store_true", help="one global client, unwrapped")
    args = parser.parse_args()

    def make() -> redis.asyncio.Redis:
        return redis.asyncio.Redis(port=args.port, socket_timeout=5, client_name=NAME)

    client = make() if args.unsafe else safeclients.per_loop(make)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()  # guards outcomes (8 loop threads add to it)

    async def one() -> None:
        token = uuid.uuid4().hex
        try:
            await client.set(token, token)
            ok = await client.get(token) == token.encode()
            outcome = "ok" if ok else "wrong"
        except Exception as exc:
            outcome = type(exc).__name__
        with lock:
            outcomes[outcome] += 1

    async def loop_body() -> None:
        await asyncio.gather(*(one() for _ in range(20)))

    for _ in range(50):
        asyncio.run(loop_body())
    threads = [threading.Thread(target=asyncio.run, args=(loop_body(),)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    admin = redis.Redis(port=args.port, socket_timeout=5)
    left = sum(1 for c in admin.client_list() if c.get("name") == NAME)
    print(f"outcomes: {dict(outcomes)}")
    if safeclients.is_proxy(client):
        print(f"stats: {safeclients.stats(client)}")
    print(f"connections still open on the server: {left}")


if __name__ == "__main__":
    main()
