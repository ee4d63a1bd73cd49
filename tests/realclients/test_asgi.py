"""The async proof (issue 24): the ASGI apps of ``examples/asgi`` under ``gunicorn -k
uvicorn.workers.UvicornWorker -w 2``, with and without ``--preload``, against real Redis and
PostgreSQL.

Each app holds a module-global async client (redis.asyncio, asyncpg) in one form
(``SAFECLIENTS_EXAMPLE_FORM``), touched at import with ``asyncio.run()`` (and, for the
documented forms, also without that warm-up); the harness (:mod:`examples.asgi.prove`) sends
1000 checked requests at concurrency 32, kills every backend connection server-side, sends 300
more and stops gunicorn by PID. Asserted, per case:

* ``unwrapped`` fails (errors or wrong answers) in a bounded run, retried once;
* every documented form (``per_loop`` over a sync factory or ``create_pool``, ``pooled``, and
  with a check) answers every request right before the kill, fails at most once per backend
  connection held after it (0 with a check), holds no more connections than it promises, leaves
  none after the stop, and no coroutine in the workers goes unawaited;
* ``per_loop`` over a bare ``asyncpg.connect`` (one connection for every task of the worker's
  loop, which the docs advise against for concurrent tasks) never gives a wrong answer: the
  tasks that overlap get asyncpg's misuse error (a 503), not another request's row.

The app's ASGI plumbing (``examples/asgi/_asgi.py``) is tested in-process at the end: routes,
bad input, lifespan, a websocket refused, bad settings refused.

Every shortfall is named in one message (:func:`examples.asgi.prove.broken_promises`) with the
case's counts and the end of gunicorn's log.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from examples.asgi._asgi import (
    FORM_ENV,
    WARM_UP_ENV,
    UnknownForm,
    UnknownWarmUp,
    UnsupportedScope,
    form_from_env,
    make_application,
    warm_up_from_env,
)
from examples.asgi.prove import (
    CLIENTS,
    HEADER,
    CaseResult,
    broken_promises,
    run_case,
)
from examples.realclients.targets import Target

pytestmark = pytest.mark.integration

FIXTURE = {"redis": "redis_server", "postgresql": "postgresql"}
UNWRAPPED_ATTEMPTS = 2
MISUSE = "another operation is in progress"  # asyncpg's InterfaceError for two tasks at once


def _cases() -> list[object]:
    cases: list[object] = []
    for name, spec in sorted(CLIENTS.items()):
        for form in spec.forms:
            for preload in (False, True):
                for warm_up in (True,) if form == "unwrapped" else (True, False):
                    case_id = (
                        f"{name}-{form}-{'preload' if preload else 'no_preload'}"
                        f"-{'warm_up' if warm_up else 'cold'}"
                    )
                    cases.append(pytest.param(name, form, preload, warm_up, id=case_id))
    return cases


RESULTS: list[CaseResult] = []


def _report(result: CaseResult, broken: list[str]) -> str:
    return (
        f"{result.client} {result.form} preload={result.preload} warm_up={result.warm_up}: "
        + "; ".join(broken)
        + f"\n{HEADER}\n{result.row()}\nexamples before: {result.before.examples}"
        + f"\nexamples after the kill: {result.after.examples}"
        + f"\ngunicorn log (end):\n{result.log_tail[-1500:]}"
    )


@pytest.mark.parametrize(("client", "form", "preload", "warm_up"), _cases())
def test_asgi_client(
    client: str, form: str, preload: bool, warm_up: bool, request: pytest.FixtureRequest
) -> None:
    spec = CLIENTS[client]
    backend: Target = request.getfixturevalue(FIXTURE[spec.backend])
    attempts = UNWRAPPED_ATTEMPTS if form == "unwrapped" else 1
    for _ in range(attempts):
        result = run_case(spec, form, preload, backend, warm_up=warm_up)
        if form == "per_loop_connect":
            broken = _bare_connection_promises(result)
        else:
            broken = broken_promises(result, form in spec.checked)
        if not broken:
            break
    RESULTS.append(result)
    assert not broken, _report(result, broken)


def _bare_connection_promises(result: CaseResult) -> list[str]:
    """What ``per_loop`` over a bare asyncpg connection still promises under concurrent
    requests: no wrong answer, every error the misuse error or (after the kill) the dead
    connection's, nothing left at the backend once gunicorn stopped."""
    r, broken = result, []
    if r.start_error:
        return [f"gunicorn did not start: {r.start_error}"]
    if r.before.wrong or r.after.wrong:
        broken.append(f"{r.before.wrong} + {r.after.wrong} wrong answers before + after the kill")
    others = [e for e in r.before.examples if MISUSE not in e]
    if others:
        broken.append(f"errors before the kill other than asyncpg's misuse error: {others}")
    if r.after_stop:
        broken.append(f"{r.after_stop} connections remain at the backend after gunicorn stopped")
    if r.never_awaited:
        broken.append(f"a coroutine was never awaited: {r.never_awaited[0].strip()[:160]}")
    return broken


def results_table() -> str:
    return "\n".join([HEADER, *(r.row() for r in RESULTS)]) if RESULTS else ""


# -- the app's ASGI plumbing, called in-process (no sockets, no backend) ------------------------


class DriverDown(Exception):
    """Stands in for a driver's own error class (``backend_errors``)."""


async def _handle(n: int, token: str) -> str:
    if token == "down":
        raise DriverDown("connection refused")
    if token == "other-loop":
        raise RuntimeError("Event loop is closed")
    return token


APP = make_application(_handle, client=object(), form="unwrapped", backend_errors=(DriverDown,))


def _call(scope: dict[str, Any], incoming: list[dict[str, Any]] | None = None) -> list[Any]:
    """Run the app on one scope in a loop of its own; the messages it sent."""
    sent: list[Any] = []
    queue = list(incoming or [])

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(APP(scope, receive, send), 5.0))
    return sent


def _http(path: str, query: str = "", method: str = "GET") -> tuple[int, dict[str, Any]]:
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode()}
    start, body = _call(scope)
    return start["status"], json.loads(body["body"])


@pytest.mark.parametrize(
    ("path", "query", "method", "status", "says"),
    [
        ("/item", "n=3&token=t-1", "GET", 200, "t-1"),
        ("/item", "n=3", "GET", 400, "need ?n=<digits>&token=<text>"),
        ("/item", "n=x&token=t", "GET", 400, "need ?n=<digits>&token=<text>"),
        ("/item", "n=3&token=down", "GET", 503, "DriverDown: connection refused"),
        ("/item", "n=3&token=other-loop", "GET", 500, "RuntimeError: Event loop is closed"),
        ("/item", "n=3&token=t", "POST", 405, "only GET"),
        ("/nowhere", "", "GET", 404, "no route /nowhere"),
        ("/health", "", "GET", 200, ""),
    ],
)
def test_the_app_answers(path: str, query: str, method: str, status: int, says: str) -> None:
    got, body = _http(path, query, method)
    assert got == status, body
    if status == 200 and path == "/item":
        assert (body["n"], body["token"], body["echo"]) == (3, "t-1", "t-1")
    else:
        assert says in json.dumps(body), body


def test_lifespan_is_acknowledged() -> None:
    sent = _call(
        {"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    )
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_websocket_is_refused_with_a_named_error() -> None:
    with pytest.raises(UnsupportedScope, match="http only, not 'websocket'"):
        _call({"type": "websocket", "path": "/item"})


@pytest.mark.parametrize(
    ("env", "error"),
    [({FORM_ENV: "threaded"}, UnknownForm), ({WARM_UP_ENV: "yes"}, UnknownWarmUp)],
)
def test_bad_settings_are_refused_before_the_app_is_built(
    env: dict[str, str], error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (FORM_ENV, WARM_UP_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(error):
        form_from_env(("unwrapped", "per_loop"))
        warm_up_from_env()
