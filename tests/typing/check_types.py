"""Type-checked by mypy (scripts/test.sh): the decorators carry the client's type.

Not a pytest module: nothing here runs. ``typing.assert_type`` fails the mypy run if a decorated
factory is not seen as the client type.
"""

from __future__ import annotations

import sqlite3

from typing_extensions import assert_type

import safeclients


class Client:
    def submit(self, payload: bytes) -> bytes:
        return payload[::-1]

    def shutdown(self) -> None:
        pass


@safeclients.per_thread
def per_thread_client() -> Client:
    return Client()


@safeclients.per_thread(close=lambda client: None)
def per_thread_with_args() -> Client:
    return Client()


# The README's form: a lambda `close` whose parameter mypy cannot know yet (it must not error).
@safeclients.pooled(size=2, close=lambda client: client.shutdown())
def pooled_with_lambda_close() -> Client:
    return Client()


@safeclients.locked
def locked_client() -> Client:
    return Client()


@safeclients.locked(close=lambda client: None)
def locked_with_args() -> Client:
    return Client()


@safeclients.pooled
def pooled_client() -> Client:
    return Client()


@safeclients.pooled(size=4, timeout=2.0)
def pooled_with_args() -> Client:
    return Client()


@safeclients.guarded
def guarded_client() -> Client:
    return Client()


@safeclients.guarded(on_conflict="warn")
def guarded_with_args() -> Client:
    return Client()


@safeclients.per_process
def per_process_client() -> Client:
    return Client()


@safeclients.per_loop
def per_loop_client() -> Client:
    return Client()


@safeclients.pooled(size=4, check=lambda client: client.shutdown(), max_lifetime=300.0)
def pooled_with_health() -> Client:
    return Client()


@safeclients.locked(timeout=None)
def locked_without_limit() -> Client:
    return Client()


assert_type(per_process_client, Client)
assert_type(per_loop_client, Client)
assert_type(pooled_with_health, Client)
assert_type(locked_without_limit, Client)
assert_type(per_thread_client, Client)
assert_type(pooled_with_lambda_close, Client)
assert_type(per_thread_with_args, Client)
assert_type(locked_client, Client)
assert_type(locked_with_args, Client)
assert_type(pooled_client, Client)
assert_type(pooled_with_args, Client)
assert_type(guarded_client, Client)
assert_type(guarded_with_args, Client)

assert_type(safeclients.per_thread(Client), Client)
assert_type(safeclients.locked(Client()), Client)
assert_type(safeclients.locked(Client), Client)
assert_type(safeclients.pooled(lambda: sqlite3.connect(":memory:")), sqlite3.Connection)
assert_type(per_thread_client.submit(b"abc"), bytes)


def use_checkout() -> bytes:
    with safeclients.checkout(pooled_client) as client:
        assert_type(client, Client)
        return client.submit(b"x")


assert_type(safeclients.stats(locked_client), safeclients.Stats)
assert_type(safeclients.is_proxy(locked_client), bool)
