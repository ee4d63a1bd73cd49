"""A parent process whose children inherit a connected proxy; run by tests/realclients/test_fork.py.

``python -m tests.realclients.forked_parent DRIVER JSON_PARAMS``: for each policy, the parent
makes a proxy over DRIVER's client, uses it (its connection is open), then forks twice: one
child uses the proxy (the policy drops the inherited instance and makes the child's own) and
one never does; each child ends with an ordinary ``sys.exit`` (the interpreter's exit runs,
finalizers included). After each child, the parent queries again on its own connection. Prints
one JSON line per policy: ``{"policy", "ok", "error", "same"}``, ``same`` whether the parent
still runs on the connection it had (its server-side id, and one instance created, none
discarded).

A separate script, not a pytest process: a forked pytest would run pytest's own exit in the
child, and ``os._exit`` would skip exactly the interpreter exit this proves harmless.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import safeclients
from tests.realclients.drivers import FACTORIES

POLICIES = ("per_thread", "locked", "pooled", "per_process")


def session_id(driver: str, proxy: Any) -> object:
    """One round trip on the proxy's connection; returns the server's id of that session."""
    if driver in ("pymysql", "mysqlclient"):
        cur = proxy.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        (value,) = cur.fetchone()
        cur.close()
        proxy.commit()
        return value
    if driver in ("psycopg2", "psycopg"):
        cur = proxy.cursor()
        cur.execute("SELECT pg_backend_pid()")
        (value,) = cur.fetchone()
        cur.close()
        if driver == "psycopg2":
            proxy.rollback()
        return value
    if driver == "redis":
        return proxy.client_id()
    if driver == "smtplib":
        code, _ = proxy.noop()
        if code != 250:
            raise RuntimeError(f"NOOP answered {code}")
        return None  # no session id: `created` says the rest
    if driver == "ftplib":
        return proxy.pwd() and None  # a round trip; `created` says the rest
    if driver == "pymemcache":
        proxy.set("forked-parent", str(os.getpid()).encode())
        return proxy.get("forked-parent") and None  # no session id: `created` says the rest
    channel = proxy.channel()  # pika: a round trip to open a channel, and one to declare
    channel.queue_declare(queue="", exclusive=True)
    channel.close()
    return None  # no session id: the parent's `created` count says it kept its connection


def _child(driver: str, proxy: Any, use: bool) -> None:
    """In the child: use the proxy (or not), then exit the ordinary way."""
    code = 0
    try:
        if use:
            session_id(driver, proxy)
    except BaseException:  # reported through the exit status
        code = 3
    sys.exit(code)


def run(driver: str, policy: str, params: dict[str, Any]) -> dict[str, Any]:
    factory = FACTORIES[driver](params)
    if policy == "pooled":
        proxy = safeclients.pooled(factory, size=1, timeout=10)
    else:
        proxy = getattr(safeclients, policy)(factory)
    result: dict[str, Any] = {"policy": policy, "ok": False, "error": "", "same": False}
    try:
        first = session_id(driver, proxy)
        for use in (True, False):
            pid = os.fork()
            if pid == 0:
                _child(driver, proxy, use)
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"the child (use={use}) failed: status {status}")
            now = session_id(driver, proxy)
            stats = safeclients.stats(proxy)
            result["same"] = now == first and (stats.created, stats.discarded) == (1, 0)
            if not result["same"]:
                raise RuntimeError(f"the parent's session changed: {first} -> {now}, {stats}")
        result["ok"] = True
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            safeclients.dispose(proxy)
        except Exception as exc:
            result["error"] += f" (dispose: {type(exc).__name__}: {exc})"
    return result


def main() -> None:
    driver, params = sys.argv[1], json.loads(sys.argv[2])
    for policy in POLICIES:
        print(json.dumps(run(driver, policy, params)), flush=True)


if __name__ == "__main__":
    main()
