"""``safeclients.audit.register``: extension by type or by qualified name, MRO matching."""

from __future__ import annotations

import types
from collections.abc import Iterator

import gearman  # type: ignore[import-untyped]
import pytest

from safeclients.audit import find_unsafe, register, unregister


class Session:
    """Stands for a third-party client the registry doesn't know."""

    def __init__(self, open_: bool = False) -> None:
        self.open = open_


class PooledSession(Session):
    pass


SESSION = f"{__name__}.Session"


@pytest.fixture
def registered() -> Iterator[list[type | str]]:
    """Names registered by a test; unregistered afterwards so tests stay independent."""
    names: list[type | str] = []
    yield names
    for name in names:
        unregister(name)


def app_with(**globals_: object) -> types.ModuleType:
    app = types.ModuleType("reg_app")
    vars(app).update(globals_)
    return app


def test_unknown_type_is_not_reported() -> None:
    assert find_unsafe([app_with(s=Session())]) == []


def test_register_by_type_matches_instances_and_subclasses(registered: list[type | str]) -> None:
    register(Session, reason="Not thread-safe.", suggest="safeclients.per_thread(factory)")
    registered.append(Session)
    found = {f.where: f for f in find_unsafe([app_with(s=Session(), p=PooledSession())])}
    assert set(found) == {"reg_app.s", "reg_app.p"}
    assert found["reg_app.p"].type_name == f"{__name__}.PooledSession"
    assert found["reg_app.p"].reason == "Not thread-safe."
    assert found["reg_app.s"].connected is None  # no probe registered


def test_most_derived_registered_class_wins(registered: list[type | str]) -> None:
    register(SESSION, reason="base", suggest="safeclients.locked(factory)")
    register(f"{__name__}.PooledSession", reason="derived", suggest="nothing to do")
    registered += [SESSION, f"{__name__}.PooledSession"]
    found = {f.where: f.reason for f in find_unsafe([app_with(s=Session(), p=PooledSession())])}
    assert found == {"reg_app.s": "base", "reg_app.p": "derived"}


def test_register_by_name_with_a_probe(registered: list[type | str]) -> None:
    register(
        SESSION, reason="r", suggest="s", probe=lambda obj: "session open" if obj.open else None
    )
    registered.append(SESSION)
    found = {f.where: f for f in find_unsafe([app_with(a=Session(True), b=Session(False))])}
    assert (found["reg_app.a"].connected, found["reg_app.a"].connection) == (True, "session open")
    assert (found["reg_app.b"].connected, found["reg_app.b"].connection) == (False, "")


def test_an_alias_name_resolves_to_the_defining_module(registered: list[type | str]) -> None:
    # gearman.GearmanClient is defined in gearman.client: the public alias names it too, and,
    # registered later, replaces the shipped entry until it is unregistered.
    register("gearman.GearmanClient", reason="alias", suggest="s")
    registered.append("gearman.GearmanClient")
    app = app_with(jobs=gearman.GearmanClient(["127.0.0.1:9"]))
    [finding] = find_unsafe([app])
    assert (finding.type_name, finding.reason) == ("gearman.client.GearmanClient", "alias")
    unregister("gearman.GearmanClient")
    [finding] = find_unsafe([app])
    assert finding.reason.startswith("Keeps job and reply state")


def test_an_optional_package_is_matched_without_importing_it() -> None:
    # PyMySQL is not installed: an object whose class says it comes from pymysql.connections
    # is matched by name, which is all the audit needs.
    connection_class = type("Connection", (), {"__module__": "pymysql.connections", "_sock": None})
    [finding] = find_unsafe([app_with(db=connection_class())])
    assert finding.type_name == "pymysql.connections.Connection"
    assert "threadsafety = 1" in finding.reason
    assert finding.connected is False
