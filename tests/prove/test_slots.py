"""Finding an app's clients and putting detectors in their places (``safeclients._prove.slots``).
No sockets, no server: a module built in the test holds the clients."""

from __future__ import annotations

import sqlite3
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import safeclients
from safeclients._prove import slots
from safeclients._prove.detector import Sink, Watched
from tests.prove.apps._fake import MeetingClient

NAME = "prove_slots_app"


class Service:
    """Stands for an app's own class (same top-level package as the module below)."""


@pytest.fixture
def app() -> Iterator[types.ModuleType]:
    module = types.ModuleType(NAME)
    Service.__module__ = NAME  # the walk looks into objects of the app's own classes
    shared = MeetingClient()
    local = threading.local()
    local.client = MeetingClient().connect()
    service = Service()
    service.client = MeetingClient()  # type: ignore[attr-defined]
    Holder = type("Holder", (), {"client": MeetingClient(), "__module__": NAME})
    vars(module).update(
        client=shared,
        alias=shared,
        CLIENTS={"main": MeetingClient(), "other": 3},
        pool=[MeetingClient()],
        frozen=(MeetingClient(),),
        local=local,
        service=service,
        fixed=safeclients.per_thread(MeetingClient),
        db=sqlite3.connect(":memory:", check_same_thread=False),
        Holder=Holder,
        helper=len,
        sys=sys,
    )
    sys.modules[NAME] = module
    try:
        yield module
    finally:
        del sys.modules[NAME]
        Service.__module__ = __name__


def test_find_reaches_globals_and_one_level_down(app: types.ModuleType) -> None:
    places, unwatched, proxies = slots.find([app])
    found = {place.where for place in places}
    assert found == {
        f"{NAME}.client",
        f"{NAME}.alias",
        f"{NAME}.CLIENTS['main']",
        f"{NAME}.pool[0]",
        f"{NAME}.local.client",
        f"{NAME}.service.client",
        f"{NAME}.db",
        f"{NAME}.Holder.client",
    }
    assert unwatched == [
        f"{NAME}.frozen<tuple item> (tests.prove.apps._fake.MeetingClient) is held in a tuple, "
        "which cannot be changed in place: not watched"
    ]
    assert proxies == 1  # `fixed`, counted and never asked for its client


def test_watch_puts_one_detector_per_instance_in_every_place_and_restore_undoes_it(
    app: types.ModuleType, tmp_path: Path
) -> None:
    originals = dict(vars(app))
    local_client = app.local.client
    places, unwatched, proxies = slots.find([app])
    watching = slots.watch(places, Sink(tmp_path))
    assert watching.count == 7
    holder_client = vars(app.Holder)["client"]
    assert type(app.client) is Watched and app.client is app.alias
    assert type(app.CLIENTS["main"]) is Watched and app.CLIENTS["other"] == 3
    assert type(app.pool[0]) is Watched and type(app.service.client) is Watched
    assert type(app.local.client) is Watched and type(app.Holder().client) is Watched
    assert app.local.client.__wrapped__ is local_client
    seen_in_a_thread: list[object] = []
    thread = threading.Thread(target=lambda: seen_in_a_thread.append(vars(app.local)))
    thread.start()
    thread.join(10)
    assert seen_in_a_thread == [{}], "another thread's threading.local value was touched"

    described = {c.where: c for c in watching.describe()}
    assert described[f"{NAME}.client"].aliases == (f"{NAME}.alias",)
    assert described[f"{NAME}.local.client"].connected_at_fork is True
    assert described[f"{NAME}.client"].connected_at_fork is False
    assert described[f"{NAME}.db"].type_name == "sqlite3.Connection"
    assert described[f"{NAME}.client"].suggest == "safeclients.per_thread(factory)"

    watching.restore()
    watching.restore()  # idempotent
    assert type(app.Holder.client) is MeetingClient
    assert app.Holder.client is not holder_client  # the original is back, not the detector
    for name in ("client", "alias", "CLIENTS", "pool", "service", "db"):
        assert vars(app)[name] is originals[name]
    assert type(app.CLIENTS["main"]) is MeetingClient and app.local.client is local_client
    assert type(app.service.client) is MeetingClient and type(app.pool[0]) is MeetingClient


def test_a_second_find_does_not_watch_a_detector_again(
    app: types.ModuleType, tmp_path: Path
) -> None:
    places, _, _ = slots.find([app])
    watching = slots.watch(places, Sink(tmp_path))
    try:
        again, _, _ = slots.find([app])
        assert again == []
    finally:
        watching.restore()


def test_modules_of_takes_the_app_package_and_the_packages_asked_for() -> None:
    import tests.prove.apps.shared as root

    found = [m.__name__ for m in slots.modules_of(root)]
    assert found[0] == "tests.prove.apps.shared"
    assert "tests.prove.apps._fake" in found and all(n.startswith("tests") for n in found)
    with_more = [m.__name__ for m in slots.modules_of(root, ["safeclients"])]
    assert "safeclients.prove" in with_more
