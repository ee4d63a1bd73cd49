"""Type-checked by mypy (scripts/test.sh): the decorators carry the client's type.

Not a pytest module: nothing here runs. ``typing.assert_type`` fails the mypy run if a decorated
factory is not seen as the client type.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable

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


# An instance with a zero-argument __call__ is the client (is_factory: only functions, methods,
# partials and classes are factories): typed as itself, never as what its call returns.
class Job:
    def __call__(self) -> int:
        return 1

    def submit(self, payload: bytes) -> bytes:
        return payload


class Maker:
    def make(self) -> Client:
        return Client()

    @classmethod
    def make_cls(cls) -> Client:
        return Client()


def make_client(host: str = "127.0.0.1") -> Client:
    return Client()


assert_type(safeclients.locked(Job()), Job)
assert_type(safeclients.guarded(Job()), Job)
assert_type(safeclients.locked(Job(), timeout=1.0, close=lambda job: None), Job)
assert_type(safeclients.guarded(Job(), on_conflict="warn"), Job)
assert_type(safeclients.locked(Job()).submit(b"x"), bytes)
assert_type(safeclients.locked(Job())(), int)
assert_type(safeclients.locked(Job), Job)
assert_type(safeclients.guarded(Job), Job)
# Every factory is still a factory: functions, lambdas, methods, partials, Callable values.
assert_type(safeclients.locked(make_client), Client)
assert_type(safeclients.guarded(make_client), Client)
assert_type(safeclients.locked(lambda: Job()), Job)
assert_type(safeclients.guarded(lambda: Job()), Job)
assert_type(safeclients.locked(Maker().make), Client)
assert_type(safeclients.guarded(Maker.make_cls), Client)
assert_type(safeclients.locked(functools.partial(make_client, "10.0.0.1")), Client)
assert_type(safeclients.guarded(functools.partial(make_client, "10.0.0.1")), Client)
assert_type(safeclients.guarded(Client()), Client)


def from_a_callable_value(factory: Callable[[], Client]) -> None:
    assert_type(safeclients.locked(factory), Client)
    assert_type(safeclients.guarded(factory, close=lambda client: client.shutdown()), Client)
