"""Where an app keeps its clients, and how to put a detector in each place.

:func:`find` looks at the globals of the given modules and one level down: a dict's items, a
list's items, the attributes of an instance of a class from the same packages (``service.db``),
the attributes of a class defined in the module (``class Service: db = connect()``), and the
value a ``threading.local`` holds *in the calling thread* (the master's main thread: the value
every worker's core 0 inherits). Each client is recognized by its type's profile
(``safeclients.profiles.profile_for``), as the audit does; safeclients proxies are counted, never
looked into (asking one for its client would create it). A client held in a tuple or a set
cannot be replaced in place: it is listed as not watched.

:func:`watch` replaces every client found with a :class:`~safeclients._prove.detector.Watched`
(one per instance, in every place that holds it) and returns a :class:`Watching`, which can
describe the clients (their connection state, from the profile's probe, which sends nothing)
and put the originals back.

Process and thread: runs before the fork, in the proving ground's master or in the test
process (``hammer``), on the thread that owns the ``threading.local`` values to watch. Across a
fork: nothing to say; the Watched objects it installs are described in ``detector``.
"""

from __future__ import annotations

import json
import os
import reprlib
import sys
import threading
import types
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from safeclients import profiles
from safeclients._prove.detector import Sink, Track, Watched
from safeclients.audit import CONTAINER_ITEMS, connection_state, suggestion
from safeclients.control import is_proxy
from safeclients.profiles import Profile, qualname

__all__ = ["Place", "Client", "Watching", "find", "watch", "modules_of", "CLIENTS_FILE"]

#: The description of the watched clients, beside the event files (read by the verdict).
CLIENTS_FILE = "clients.json"

# Globals that are code, not state: never a client, never looked into.
_CODE = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)

_key_repr = reprlib.Repr()
_key_repr.maxstring = 60
_key_repr.maxother = 60


@dataclass(frozen=True)
class Place:
    """One place that holds a client: ``where`` it is, the client, and how to replace it."""

    where: str
    value: object
    put: Callable[[object], None]
    #: False for a place that only hands the detector over (hammer's target method, placed
    #: last): never listed among the names of a client found elsewhere too.
    named: bool = True


@dataclass(frozen=True)
class Client:
    """A watched client as the verdict reports it (JSON-able)."""

    index: int
    where: str
    aliases: tuple[str, ...]
    type_name: str
    suggest: str
    thread_safe: bool
    #: Whether it held an open connection at the fork (None: no probe).
    connected_at_fork: bool | None
    connection: str


def modules_of(root: types.ModuleType, packages: Iterable[str] = ()) -> list[types.ModuleType]:
    """``root``, then every loaded module of its top-level package and of ``packages``."""
    tops = {root.__name__.partition(".")[0], *packages}
    found = [root]
    for name, module in sorted(list(sys.modules.items())):
        if (
            module is not None
            and module is not root
            and name.partition(".")[0] in tops
            and isinstance(module, types.ModuleType)
        ):
            found.append(module)
    return found


def find(modules: Iterable[types.ModuleType]) -> tuple[list[Place], list[str], int]:
    """The places holding clients, the clients found where they cannot be replaced (a sentence
    each), and the number of safeclients proxies seen."""
    modules = list(modules)
    packages = {m.__name__.partition(".")[0] for m in modules}
    places: list[Place] = []
    unwatched: list[str] = []
    proxies = 0
    for module in modules:
        for name, value in list(vars(module).items()):
            if name.startswith("__") and name.endswith("__"):
                continue
            if is_proxy(value):
                proxies += 1
                continue
            kind = type(value)
            where = f"{module.__name__}.{name}"
            if issubclass(kind, type) and getattr(value, "__module__", None) == module.__name__:
                found, cannot, held = _children(where, value, packages)  # class attributes
                places += found
                proxies += held
                continue
            if issubclass(kind, _CODE) or kind is Watched:
                continue
            if _profile(value) is not None:
                places.append(Place(where, value, _setter(vars(module), name)))
                continue
            found, cannot, held = _children(where, value, packages)
            places += found
            unwatched += cannot
            proxies += held
    return places, unwatched, proxies


def _children(where: str, value: object, packages: set[str]) -> tuple[list[Place], list[str], int]:
    """Clients one level down in ``value`` (as :func:`find` returns them)."""
    kind = type(value)
    items: list[tuple[str, object, Callable[[object], None] | None]] = []
    if kind is dict and isinstance(value, dict):
        for key, item in list(value.items())[:CONTAINER_ITEMS]:
            items.append((f"{where}[{_key_repr.repr(key)}]", item, _setter(value, key)))
    elif kind is list and isinstance(value, list):
        for index, item in enumerate(value[:CONTAINER_ITEMS]):
            items.append((f"{where}[{index}]", item, _setter(value, index)))
    elif kind in (tuple, set, frozenset) and isinstance(value, (tuple, set, frozenset)):
        for item in list(value)[:CONTAINER_ITEMS]:
            items.append((f"{where}<{kind.__name__} item>", item, None))
    elif issubclass(kind, type) and isinstance(value, type):
        for name, item in list(vars(value).items())[:CONTAINER_ITEMS]:
            if not (name.startswith("__") and name.endswith("__")):
                items.append((f"{where}.{name}", item, _attribute_setter(value, name)))
    elif issubclass(kind, threading.local) or kind.__module__.partition(".")[0] in packages:
        try:
            if issubclass(kind, threading.local):
                # The local's own lookup: the calling thread's dict (the generic one has none).
                attributes = threading.local.__getattribute__(value, "__dict__")  # type: ignore[arg-type]
            else:
                attributes = object.__getattribute__(value, "__dict__")
        except AttributeError:
            return [], [], 0  # __slots__ only
        for name, item in list(attributes.items())[:CONTAINER_ITEMS]:
            items.append((f"{where}.{name}", item, _setter(attributes, name)))
    places: list[Place] = []
    cannot: list[str] = []
    proxies = 0
    for item_where, item, put in items:
        if is_proxy(item):
            proxies += 1
            continue
        profile = None if type(item) is Watched else _profile(item)
        if profile is None:
            continue
        if put is None:
            cannot.append(
                f"{item_where} ({qualname(type(item))}) is held in a {kind.__name__}, which "
                "cannot be changed in place: not watched"
            )
        else:
            places.append(Place(item_where, item, put))
    return places, cannot, proxies


def _setter(container: Any, key: object) -> Callable[[object], None]:
    """Stores into a module's or an instance's ``__dict__``, a dict or a list."""

    def put(value: object) -> None:
        container[key] = value

    return put


def _attribute_setter(cls: type, name: str) -> Callable[[object], None]:
    """Sets a class attribute (a class's ``__dict__`` is read-only)."""

    def put(value: object) -> None:
        setattr(cls, name, value)

    return put


def _profile(value: object) -> Profile | None:
    return profiles.profile_for(type(value))


class Watching:
    """The clients replaced by detectors (see :func:`watch`)."""

    def __init__(self, clients: list[tuple[Client, object]], undo: list[Place]) -> None:
        self._clients = clients  # (description without connection state, original)
        self._undo = undo

    @property
    def count(self) -> int:
        return len(self._clients)

    def describe(self) -> list[Client]:
        """The clients, with their connection state now (call it right before the fork)."""
        described = []
        for client, original in self._clients:
            profile = _profile(original)
            connected: bool | None = None
            connection = ""
            if profile is not None:
                connected, connection = connection_state(original, profile)
            described.append(replace(client, connected_at_fork=connected, connection=connection))
        return described

    def write(self, directory: str | os.PathLike[str], unwatched: list[str], proxies: int) -> None:
        """Write the description (now) to ``directory/CLIENTS_FILE`` for the verdict."""
        data = {
            "clients": [asdict(c) for c in self.describe()],
            "unwatched": unwatched,
            "proxies": proxies,
        }
        path = Path(directory) / CLIENTS_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1))
        os.replace(temporary, path)

    def restore(self) -> None:
        """Put every original back where it was (idempotent)."""
        undo, self._undo = self._undo, []
        for place in undo:
            place.put(place.value)


def watch(places: list[Place], sink: Sink) -> Watching:
    """Replace each client in ``places`` with a detector writing to ``sink``: one detector per
    instance, installed in every place that holds it."""
    proxies: dict[int, Watched] = {}
    described: dict[int, tuple[Client, object]] = {}
    for place in places:
        key = id(place.value)
        proxy = proxies.get(key)
        if proxy is None:
            profile = _profile(place.value)
            assert profile is not None  # find() returns profiled clients only
            index = len(proxies)
            proxy = Watched(place.value, Track(index, sink, profile.derived))
            proxies[key] = proxy
            described[key] = (
                Client(
                    index=index,
                    where=place.where,
                    aliases=(),
                    type_name=qualname(type(place.value)),
                    suggest=suggestion(profile),
                    thread_safe=profile.thread_safe,
                    connected_at_fork=None,
                    connection="",
                ),
                place.value,
            )
        elif place.named:
            client, original = described[key]
            described[key] = (replace(client, aliases=(*client.aliases, place.where)), original)
        place.put(proxy)
    return Watching(list(described.values()), places)
