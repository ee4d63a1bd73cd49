"""Find the trap before it bites: list module globals that are unsafe clients.

``find_unsafe(["myapp.wsgi"])`` imports the modules, walks their globals (and the globals of the
modules they use from the same top-level package, and two levels into dicts, lists, tuples,
sets and instances of the app's own classes), and returns a :class:`Finding` for every object whose type is a known non-thread-safe or
non-fork-safe client: where it is, its type, why it is unsafe, whether it already holds an open
connection, and the safeclients policy to use. ``python -m safeclients audit MODULE...`` prints
the same and exits 1 when it found any (see ``safeclients.__main__``).

Known types live in a registry keyed by qualified type name (``"pymysql.connections.Connection"``)
so the audit never imports an optional package: an object is matched by walking
``type(obj).__mro__``, the most derived registered class wins. ``register()`` extends it.

Objects already wrapped by safeclients (``safeclients.is_proxy``) are reported as safe, with
their policy, and are never touched: a per-thread or pooled proxy is not asked for its client,
because that would create one (and connect) in the auditing process.

Process and thread: the audit runs wherever it is called, usually a CLI process or a test, never
inside a server; it only reads attributes, except for the connection probes below, which read
state (``fileno()``, ``getpeername()``, sqlite's ``total_changes``) and send nothing.

Across a fork: nothing to say, the registry is plain data and the audit holds no resources.
"""

from __future__ import annotations

import dataclasses
import importlib
import socket
import sqlite3
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from safeclients._proxy import policy_of
from safeclients.control import is_proxy, policy_name

__all__ = ["Finding", "find_unsafe", "register", "unregister", "Probe"]

#: A probe looks at a client and describes its open connection ("127.0.0.1:4730"), or returns
#: None when it holds none. It must not send anything and must not raise.
Probe = Callable[[Any], "str | None"]

#: How deep the walk goes into what a global holds: containers (``CLIENTS = {"a": Client()}``)
#: and instances of the app's own classes (``service.client``); and how many items per level.
CONTAINER_DEPTH = 2
CONTAINER_ITEMS = 1000


@dataclass(frozen=True)
class Finding:
    """One global that is (or wraps) a known unsafe client.

    ``connected`` is True when the object already holds an open connection (so a connection
    made at import time, before a server forks, is shared by every worker), False when it holds
    none, None when the registry entry has no probe. ``wrapped`` is True for an object already
    wrapped by safeclients: safe, listed for information, not counted by the CLI's exit status.
    """

    where: str
    type_name: str
    reason: str
    suggest: str
    connected: bool | None
    connection: str
    wrapped: bool
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Entry:
    reason: str
    suggest: str
    probe: Probe | None


# Guards _registry: register() may be called from any thread (an app's import-time code).
_registry_lock = threading.Lock()
_registry: dict[str, _Entry] = {}


def register(type_or_qualname: type | str, *, reason: str, suggest: str,
             probe: Probe | None = None) -> None:
    """Declare a type unsafe: ``reason`` is one sentence, ``suggest`` the policy to use.

    ``type_or_qualname`` is a class or its qualified name ``"package.module.Class"``; a name
    that is an alias (``"gearman.GearmanClient"``) is resolved to the class's own module when
    the package is already imported at audit time. Registering a name again replaces the entry.
    """
    name = _qualname(type_or_qualname) if isinstance(type_or_qualname, type) else type_or_qualname
    with _registry_lock:
        _registry[name] = _Entry(reason=reason, suggest=suggest, probe=probe)


def unregister(type_or_qualname: type | str) -> None:
    """Remove an entry (no error when absent)."""
    name = _qualname(type_or_qualname) if isinstance(type_or_qualname, type) else type_or_qualname
    with _registry_lock:
        _registry.pop(name, None)


def find_unsafe(modules: Iterable[str | types.ModuleType]) -> list[Finding]:
    """Import ``modules`` (names or module objects) and return every finding.

    Unsafe findings come first, then wrapped (safe) ones, each group in walk order. An import
    error propagates: the caller decides (the CLI turns it into exit status 2).
    """
    roots = [importlib.import_module(m) if isinstance(m, str) else m for m in modules]
    known = _resolved_registry()
    found: dict[int, Finding] = {}
    for where, obj in _walk(roots):
        prior = found.get(id(obj))
        if prior is not None:
            if where != prior.where and where not in prior.aliases:
                found[id(obj)] = _with_alias(prior, where)
            continue
        finding = _inspect(where, obj, known)
        if finding is not None:
            found[id(obj)] = finding
    findings = list(found.values())
    return [f for f in findings if not f.wrapped] + [f for f in findings if f.wrapped]


def _with_alias(finding: Finding, where: str) -> Finding:
    return dataclasses.replace(finding, aliases=(*finding.aliases, where))


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolved_registry() -> dict[str, _Entry]:
    """The registry keyed by each class's own qualified name where the class is importable
    without importing anything new (its module already in ``sys.modules``)."""
    with _registry_lock:
        entries = dict(_registry)
    resolved: dict[str, _Entry] = {}
    for name, entry in entries.items():
        cls = _lookup_loaded(name)
        resolved[_qualname(cls) if cls is not None else name] = entry
    return resolved


def _lookup_loaded(name: str) -> type | None:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj: object = module
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        return obj if isinstance(obj, type) else None
    return None


def _walk(roots: list[types.ModuleType]) -> Iterator[tuple[str, object]]:
    """Yield ``(where, value)`` for the globals of ``roots`` and of every module of the same
    top-level package they reach (as a module global, or as the home of a function or class
    they imported), breadth first, each module once."""
    queue = list(roots)
    seen = {m.__name__ for m in roots}
    while queue:
        module = queue.pop(0)
        package = module.__name__.partition(".")[0]
        for name, value in list(vars(module).items()):
            if name.startswith("__") and name.endswith("__"):
                continue
            if is_proxy(value):
                # Before any isinstance(): a proxy answers it with its client's class, which
                # would create the client.
                yield f"{module.__name__}.{name}", value
                continue
            home = _home_module(value)
            if home is not None:
                if home.__name__.partition(".")[0] == package and home.__name__ not in seen:
                    seen.add(home.__name__)
                    queue.append(home)
                if isinstance(value, types.ModuleType):
                    continue
            yield from _values(f"{module.__name__}.{name}", value, CONTAINER_DEPTH, package)


def _home_module(value: object) -> types.ModuleType | None:
    """The module a global comes from when it is a module, function or class.

    ``type(value)`` checks, not ``isinstance``: a lazy object (a proxy, a context-local)
    computes its ``__class__``, which can create a client or raise outside a request.
    """
    kind = type(value)
    if issubclass(kind, types.ModuleType) and isinstance(value, types.ModuleType):
        return value
    if issubclass(kind, (types.FunctionType, type)):
        return sys.modules.get(getattr(value, "__module__", "") or "")
    return None


def _values(where: str, value: object, depth: int, package: str) -> Iterator[tuple[str, object]]:
    yield where, value
    if depth > 0 and not is_proxy(value):
        for child_where, child in _children(where, value, package):
            yield from _values(child_where, child, depth - 1, package)


def _children(where: str, value: object, package: str) -> list[tuple[str, object]]:
    """What a global holds: container items, and the attributes of an instance of a class
    defined in the app's own package (``service.client``). At most CONTAINER_ITEMS of them."""
    kind = type(value)
    children: list[tuple[str, object]]
    if kind is dict and isinstance(value, dict):
        children = [(f"{where}[{key!r}]", item) for key, item in value.items()]
    elif kind in (list, tuple) and isinstance(value, (list, tuple)):
        children = [(f"{where}[{index}]", item) for index, item in enumerate(value)]
    elif kind in (set, frozenset) and isinstance(value, (set, frozenset)):
        children = [(f"{where}<set item>", item) for item in value]
    elif kind.__module__.partition(".")[0] == package:
        try:
            attributes = object.__getattribute__(value, "__dict__")
        except AttributeError:
            return []  # a class with __slots__ only
        children = [(f"{where}.{name}", item) for name, item in dict(attributes).items()]
    else:
        return []
    return children[:CONTAINER_ITEMS]


def _inspect(where: str, obj: object, known: dict[str, _Entry]) -> Finding | None:
    if is_proxy(obj):
        return _wrapped_finding(where, obj)
    for cls in type(obj).__mro__:
        entry = known.get(_qualname(cls))
        if entry is None:
            continue
        description = entry.probe(obj) if entry.probe is not None else None
        return Finding(
            where=where,
            type_name=_qualname(type(obj)),
            reason=entry.reason,
            suggest=entry.suggest,
            connected=(description is not None) if entry.probe is not None else None,
            connection=description or "",
            wrapped=False,
        )
    return None


def _wrapped_finding(where: str, proxy: object) -> Finding:
    """A proxy: safe, except ``guarded`` (a detector over one shared instance, still unsafe).

    A proxy built around an existing instance (no factory) is safe in one process but cannot
    recreate its client after a fork; the reason says so, as the worker will refuse it.
    """
    kind = policy_name(proxy)
    policy = policy_of(proxy)
    # The type the policy has seen; None before its first instance, which the audit must not
    # create (that would connect in the auditing process).
    client_type = policy.client_type
    type_name = _qualname(client_type) if client_type is not None else "not created yet"
    if kind == "guarded":
        return Finding(
            where=where, type_name=type_name, wrapped=False, connected=None, connection="",
            reason="Watched by safeclients.guarded, a detector, not a fix: every thread still "
                   "shares one instance.",
            suggest="safeclients.per_thread, locked or pooled, once guarded has shown the race",
        )
    reason = f"already wrapped by safeclients.{kind}"
    if policy._factory is None:
        reason += (" around an instance, not a factory: a forked worker cannot recreate it "
                   "and will raise ForkedUseError (pass a factory)")
    return Finding(where=where, type_name=type_name, reason=reason, suggest="nothing to do",
                   connected=None, connection="", wrapped=True)


# --------------------------------------------------------------------------------------------
# Connection probes: read state, send nothing, never raise.


def _peer(sock: object) -> str | None:
    """``"host:port"`` of a socket's peer, ``"open, not connected"``, or None when closed."""
    if not isinstance(sock, socket.socket) or sock.fileno() < 0:
        return None
    try:
        peer = sock.getpeername()
    except OSError:
        return f"fd {sock.fileno()} open, not connected"
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    return str(peer) or f"fd {sock.fileno()} open"


def _probe_attr_socket(attr: str) -> Probe:
    def probe(obj: Any) -> str | None:
        return _peer(getattr(obj, attr, None))

    return probe


def _probe_sqlite(conn: Any) -> str | None:
    try:
        conn.total_changes  # raises ProgrammingError once closed
    except sqlite3.ProgrammingError as exc:
        if "closed" in str(exc):
            return None
        return "sqlite database handle (created in another thread)"
    return "sqlite database handle"


def _probe_gearman(client: Any) -> str | None:
    connected = [f"{c.gearman_host}:{c.gearman_port}"
                 for c in getattr(client, "connection_list", ())
                 if getattr(c, "connected", False)]
    return ", ".join(connected) or None


def _probe_pymysql(conn: Any) -> str | None:
    if getattr(conn, "_sock", None) is None:
        return None
    return f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"


_FORKED = "A connection opened before the server forks is shared by every worker process."

# Each reason below was checked against the library's own documentation or source; the quote
# is next to the entry.

# python-gearman (pygearman 0.2.6) has no lock anywhere (no `threading` import in the package);
# GearmanClient keeps "the authoritative copy of all requests that this client knows about" in
# one dict and each GearmanConnection buffers commands in _outgoing_buffer/_incoming_buffer
# (gearman/client.py, gearman/connection.py), so two threads' jobs and replies get mixed.
register(
    "gearman.client.GearmanClient",
    reason="Keeps job and reply state in unlocked per-connection buffers, so threads sharing it "
           "get each other's results or protocol errors. " + _FORKED,
    suggest="safeclients.per_thread(factory) (or pooled(size=N) to bound connections)",
    probe=_probe_gearman,
)

# Python docs, sqlite3.connect(check_same_thread): "If True (default), ProgrammingError will be
# raised if the database connection is used by a thread other than the one that created it. If
# False, the connection may be accessed in multiple threads; write operations may need to be
# serialized by the user to avoid data corruption." Transactions belong to the connection, so
# one thread's commit() or rollback() ends another thread's transaction. SQLite, "How To Corrupt
# An SQLite Database File" section 2.6: "Carrying an open database connection across a fork()".
register(
    "sqlite3.Connection",
    reason="Refuses other threads by default (check_same_thread), and with it off the open "
           "transaction is shared, so one thread's commit or rollback ends another's; SQLite "
           "warns that carrying an open connection across a fork() can corrupt the database.",
    suggest="safeclients.per_thread(factory) (locked/pooled: hold a transaction with checkout())",
    probe=_probe_sqlite,
)

# CPython Lib/http/client.py module docstring: "HTTPConnection goes through a number of
# "states", which define when a client may legally make another request or fetch the response
# ... a second request may not be started until {response-headers-read}"; the instance holds a
# single socket and state (CannotSendRequest / ResponseNotReady otherwise).
_HTTP_REASON = ("One request/response state machine over one socket: a second thread's request "
                "raises CannotSendRequest/ResponseNotReady or reads the other thread's response. "
                + _FORKED)
register("http.client.HTTPConnection", reason=_HTTP_REASON,
         suggest="safeclients.pooled(factory) (hold request+response with checkout())",
         probe=_probe_attr_socket("sock"))
register("http.client.HTTPSConnection", reason=_HTTP_REASON,
         suggest="safeclients.pooled(factory) (hold request+response with checkout())",
         probe=_probe_attr_socket("sock"))

# pymemcache docs (Getting started, "Using a client pool"): "pymemcache.client.base.PooledClient
# is a thread-safe client pool that provides the same API as pymemcache.client.base.Client";
# the base Client holds one socket (self.sock) and reads replies from it without a lock
# (pinterest/pymemcache#34 "The client objects don't appear to be threadsafe").
register(
    "pymemcache.client.base.Client",
    reason="One socket read without a lock: concurrent threads read each other's replies "
           "(wrong values) or fail with protocol errors; pymemcache points to PooledClient. "
           + _FORKED,
    suggest="safeclients.pooled(factory) or per_thread(factory)",
    probe=_probe_attr_socket("sock"),
)

# PyMySQL pymysql/__init__.py: "threadsafety = 1", which PEP 249 defines as "Threads may share
# the module, but not connections."
register(
    "pymysql.connections.Connection",
    reason="PyMySQL declares DB-API threadsafety = 1 (threads may share the module, not "
           "connections): sharing one gives 'Packet sequence number wrong'. " + _FORKED,
    suggest="safeclients.pooled(factory) (hold a transaction with checkout())",
    probe=_probe_pymysql,
)

# CPython Lib/smtplib.py: SMTP "manages a connection to an SMTP or ESMTP server"; docmd() is
# putcmd() then getreply() on the one socket, with no lock (the module imports no threading).
register(
    "smtplib.SMTP",
    reason="A stateful command/reply session on one socket without a lock: threads interleave "
           "commands and read each other's replies. " + _FORKED,
    suggest="safeclients.locked(factory) (hold a whole message with checkout())",
    probe=_probe_attr_socket("sock"),
)

# CPython Lib/ftplib.py: FTP.sendcmd() "Send a command and return the response" is putcmd()
# then getresp() on the one control connection, with no lock; the session (login, cwd) is state.
register(
    "ftplib.FTP",
    reason="A stateful command/response session (login, cwd) on one control connection without "
           "a lock: threads read each other's responses. " + _FORKED,
    suggest="safeclients.locked(factory) (hold a multi-command step with checkout())",
    probe=_probe_attr_socket("sock"),
)

# Python docs, socket.sendall(): "Unlike send(), this method continues to send data from bytes
# until either all data has been sent or an error occurs", i.e. in several send() calls that two
# threads can interleave; and a socket's file descriptor is inherited by a forked child (os.fork).
register(
    "socket.socket",
    reason="A byte stream: two threads' sendall()/recv() calls interleave and split each other's "
           "messages. " + _FORKED,
    suggest="safeclients.per_thread(factory) or locked(factory)",
    probe=_peer,
)
