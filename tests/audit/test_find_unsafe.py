"""``safeclients.audit.find_unsafe``: known types found, their state, wrapped ones safe."""

from __future__ import annotations

import http.client
import socket
import sqlite3
import types
from collections.abc import Iterator

import gearman  # type: ignore[import-untyped]
import pytest

import safeclients
from safeclients.audit import Finding, find_unsafe
from tests.audit.fixtures import unsafe_app, wrapped_app

APP = "tests.audit.fixtures.unsafe_app"


def by_where(findings: list[Finding]) -> dict[str, Finding]:
    return {f.where: f for f in findings}


def test_every_known_type_in_the_app_is_found() -> None:
    found = by_where(find_unsafe([APP]))
    assert {where: f.type_name for where, f in found.items()} == {
        f"{APP}.db": "sqlite3.Connection",
        f"{APP}.pipe": "socket.socket",
        f"{APP}.pipe_peer": "socket.socket",
        f"{APP}.api": "http.client.HTTPConnection",
        f"{APP}.cache": "pymemcache.client.base.Client",
        f"{APP}.jobs": "gearman.client.GearmanClient",
        f"{APP}.mailer": "smtplib.SMTP",
        f"{APP}.ftp": "ftplib.FTP",
        f"{APP}.closed_db": "sqlite3.Connection",
        f"{APP}.SHARDS['a']": "sqlite3.Connection",
        f"{APP}.service.mailer": "smtplib.SMTP",
        # reached through `from tests.audit.fixtures.helpers import cached_lookup`
        "tests.audit.fixtures.helpers.backend": "http.client.HTTPConnection",
    }
    assert all(
        not f.wrapped and f.reason and f.suggest.startswith("safeclients.") for f in found.values()
    )


def test_open_connections_are_told_apart_from_lazy_ones() -> None:
    found = by_where(find_unsafe([unsafe_app]))
    opened = {w for w, f in found.items() if f.connected}
    assert opened == {f"{APP}.db", f"{APP}.pipe", f"{APP}.pipe_peer", f"{APP}.SHARDS['a']"}
    assert found[f"{APP}.api"].connected is False
    assert found[f"{APP}.closed_db"].connected is False


def test_one_object_under_two_names_is_one_finding() -> None:
    found = by_where(find_unsafe([APP]))
    assert found[f"{APP}.db"].aliases == (f"{APP}.same_db_again",)
    assert f"{APP}.same_db_again" not in found


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def test_probes_report_the_peer_of_a_connection_made_at_import(listener: socket.socket) -> None:
    host, port = listener.getsockname()[:2]
    api = http.client.HTTPConnection(host, port, timeout=5)
    api.connect()
    raw = socket.create_connection((host, port), timeout=5)
    jobs = gearman.GearmanClient([f"{host}:{port}"])
    jobs.connection_list[0].connect()
    db = sqlite3.connect(":memory:")
    app = types.ModuleType("probe_app")
    vars(app).update(api=api, raw=raw, jobs=jobs, db=db)
    try:
        found = by_where(find_unsafe([app]))
        for name in ("api", "raw", "jobs"):
            assert found[f"probe_app.{name}"].connected is True
            assert found[f"probe_app.{name}"].connection == f"{host}:{port}", name
        assert found["probe_app.db"].connection == "sqlite database handle"
    finally:
        api.close()
        raw.close()
        jobs.shutdown()
        db.close()


def test_wrapped_clients_are_safe_and_left_uncreated() -> None:
    findings = find_unsafe([wrapped_app])
    assert [(f.where, f.wrapped) for f in findings] == [
        ("tests.audit.fixtures.wrapped_app.db", True),
        ("tests.audit.fixtures.wrapped_app.ledger", True),
    ]
    assert findings[0].reason == "already wrapped by safeclients.per_thread"
    # The audit must not have asked the per-thread proxy for a client (that would connect).
    assert safeclients.stats(wrapped_app.db).created == 0
    assert findings[0].type_name == "sqlite3.Connection", "from the factory's annotation"
    assert findings[1].type_name == "sqlite3.Connection"
    assert "around an instance, not a factory" in findings[1].reason
    assert "ForkedUseError" in findings[1].reason


def test_a_guarded_client_is_still_unsafe() -> None:
    app = types.ModuleType("guarded_app")
    vars(app)["db"] = safeclients.guarded(lambda: sqlite3.connect(":memory:"))
    [finding] = find_unsafe([app])
    assert (finding.where, finding.wrapped) == ("guarded_app.db", False)
    assert "detector, not a fix" in finding.reason


def test_proxies_inside_containers_are_not_iterated() -> None:
    made: list[int] = []

    def factory() -> list[int]:
        made.append(1)
        return [1, 2, 3]

    app = types.ModuleType("container_app")
    vars(app)["CLIENTS"] = {"numbers": safeclients.per_thread(factory)}
    findings = find_unsafe([app])
    assert [(f.where, f.wrapped) for f in findings] == [("container_app.CLIENTS['numbers']", True)]
    assert made == []


def test_unsafe_findings_come_before_wrapped_ones() -> None:
    findings = find_unsafe([wrapped_app, unsafe_app])
    flags = [f.wrapped for f in findings]
    assert flags == sorted(flags) and flags[0] is False and flags[-1] is True


def test_clean_app_has_no_findings() -> None:
    assert find_unsafe(["tests.audit.fixtures.clean_app"]) == []


def test_import_errors_propagate() -> None:
    with pytest.raises(ConnectionRefusedError):
        find_unsafe(["tests.audit.fixtures.broken_app"])


def test_the_client_examples_create_no_client_at_import() -> None:
    modules = [
        "examples.clients.sqlite_ledger",
        "examples.clients.http_keepalive",
        "examples.clients.memcache_values",
        "examples.clients.echo_app",
    ]
    assert find_unsafe(modules) == []


def test_a_huge_global_formats_no_more_keys_than_it_keeps() -> None:
    # Issue 15 item 17: every key of a huge dict was formatted before the first CONTAINER_ITEMS
    # were kept. Count the reprs instead of timing them.
    from safeclients.audit import CONTAINER_ITEMS

    formatted: list[int] = []

    class Key:
        def __init__(self, n: int) -> None:
            self.n = n

        def __repr__(self) -> str:
            formatted.append(self.n)
            return f"Key({self.n})"

    items = 5 * CONTAINER_ITEMS
    app = types.ModuleType("huge_app")
    vars(app).update(
        BIG={Key(n): n for n in range(items)},
        ROWS=list(range(items)),
        TAGS={f"t{n}" for n in range(items)},
    )
    assert find_unsafe([app]) == []
    assert len(formatted) <= CONTAINER_ITEMS, f"{len(formatted)} keys of {items} formatted"
