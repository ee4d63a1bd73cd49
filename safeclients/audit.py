"""Find the trap before it bites: list module globals that are unsafe clients.

``find_unsafe(["myapp.wsgi"])`` imports the modules, walks their globals (and those of the
modules they use from the same top-level package, and two levels into dicts, lists, tuples,
sets and instances of the app's own classes: ``safeclients._walker``), and returns a
:class:`Finding` for every object whose type has a client profile (``safeclients.profiles``):
where it is, its type, why it is unsafe, whether it already holds an open connection (the
profile's probe, ``safeclients._probes``), and the safeclients policy to use.
``python -m safeclients audit MODULE...`` prints the same and exits 1 when it found any (see
``safeclients.__main__``).

Objects already wrapped by safeclients (``safeclients.is_proxy``) are reported as safe, with
their policy, and are never touched: a per-thread or pooled proxy is not asked for its client,
because that would create one (and connect) in the auditing process.

Process and thread: the audit runs wherever it is called, usually a CLI process or a test, never
inside a server; it only reads attributes, except for the probes, which read state
(``fileno()``, ``getpeername()``, sqlite's ``total_changes``) and send nothing.

Across a fork: nothing to say, the registry is plain data and the audit holds no resources.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from collections.abc import Iterable
from dataclasses import dataclass

from safeclients import profiles
from safeclients._probes import Probe
from safeclients._proxy import policy_of
from safeclients._walker import CONTAINER_DEPTH, CONTAINER_ITEMS, walk
from safeclients.control import is_proxy, policy_name
from safeclients.profiles import Profile, qualname

__all__ = [
    "Finding",
    "find_unsafe",
    "connection_state",
    "suggestion",
    "register",
    "unregister",
    "Probe",
    "CONTAINER_DEPTH",
    "CONTAINER_ITEMS",
]


@dataclass(frozen=True)
class Finding:
    """One global that is (or wraps) a known unsafe client.

    ``connected`` is True when the object already holds an open connection (so a connection
    made at import time, before a server forks, is shared by every worker), False when it holds
    none, None when the profile has no probe. ``wrapped`` is True for an object already
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
    #: What the client's profile says of it across threads and across a fork (one sentence).
    safety: str = ""


def register(
    type_or_qualname: type | str, *, reason: str, suggest: str, probe: Probe | None = None
) -> None:
    """Declare a type unsafe: ``reason`` is one sentence, ``suggest`` the policy to use.

    A thin wrapper over ``safeclients.profiles.register``: ``type_or_qualname`` is a class or
    its qualified name ``"package.module.Class"``; a name that is an alias
    (``"gearman.GearmanClient"``) is resolved to the class's own module when the package is
    already imported at audit time. Registering a name that has a profile replaces its reason,
    suggestion and probe and keeps the rest (broken, close, check, derived).
    """
    name = _name(type_or_qualname)
    current = profiles.registered_as(name)
    if current is None:
        profiles.register(
            Profile(qualname=name, reason=reason, suggest=suggest, sources=(), probe=probe)
        )
    else:
        profiles.register(dataclasses.replace(current, reason=reason, suggest=suggest, probe=probe))


def unregister(type_or_qualname: type | str) -> None:
    """Remove an entry (no error when absent)."""
    profiles.unregister(_name(type_or_qualname))


def find_unsafe(modules: Iterable[str | types.ModuleType]) -> list[Finding]:
    """Import ``modules`` (names or module objects) and return every finding.

    Unsafe findings come first, then wrapped (safe) ones, each group in walk order. An import
    error propagates: the caller decides (the CLI reports it and exits EXIT_NOT_AUDITED).
    """
    roots = [importlib.import_module(m) if isinstance(m, str) else m for m in modules]
    known = profiles.registered()
    found: dict[int, Finding] = {}
    for where, obj in walk(roots):
        prior = found.get(id(obj))
        if prior is not None:
            if where != prior.where and where not in prior.aliases:
                found[id(obj)] = dataclasses.replace(prior, aliases=(*prior.aliases, where))
            continue
        finding = _inspect(where, obj, known)
        if finding is not None:
            found[id(obj)] = finding
    findings = list(found.values())
    return [f for f in findings if not f.wrapped] + [f for f in findings if f.wrapped]


def suggestion(profile: Profile) -> str:
    """What the audit tells the user to write: ``safeclients.pooled(factory)`` for a policy
    name, any other text (an older free-text registration) verbatim."""
    if profile.suggest in profiles.POLICIES:
        return f"safeclients.{profile.suggest}(factory)"
    return profile.suggest


def connection_state(obj: object, profile: Profile) -> tuple[bool | None, str]:
    """Whether ``obj`` holds an open connection now, by its profile's probe (which sends
    nothing), and the probe's description of it: ``(True, "127.0.0.1:4730")``, ``(False,
    "")``, or ``(None, "")`` when the profile has no probe (``None`` also when the probe
    raised; the description then says so). The audit's ``Finding.connected`` and the proving
    ground's "connection at the fork" both come from here."""
    if profile.probe is None:
        return None, ""
    try:
        found = profile.probe(obj)
    except Exception as exc:  # a probe must not raise; if one does, say so
        return None, f"probe failed: {type(exc).__name__}: {exc}"
    return found is not None, found or ""


def _name(type_or_qualname: type | str) -> str:
    return qualname(type_or_qualname) if isinstance(type_or_qualname, type) else type_or_qualname


def _inspect(where: str, obj: object, known: dict[str, Profile]) -> Finding | None:
    if is_proxy(obj):
        return _wrapped_finding(where, obj)
    for cls in type(obj).__mro__:
        profile = known.get(qualname(cls))
        if profile is None:
            continue
        connected, description = connection_state(obj, profile)
        return Finding(
            where=where,
            type_name=qualname(type(obj)),
            reason=profile.reason,
            suggest=suggestion(profile),
            connected=connected,
            connection=description,
            wrapped=False,
            safety=safety_of(profile),
        )
    return None


def _wrapped_finding(where: str, proxy: object) -> Finding:
    """A proxy: safe, except ``guarded`` (a detector over one shared instance, still unsafe).

    A proxy built around an existing instance (no factory) is safe in one process but cannot
    recreate its client after a fork; the reason says so, as the worker will refuse it.
    """
    kind = policy_name(proxy)
    policy = policy_of(proxy)
    # The type the policy knows (from a class factory, the factory's return annotation, or a
    # first instance); None before that: the audit must not create one (it would connect).
    client_type = policy.client_type
    type_name = qualname(client_type) if client_type is not None else "not created yet"
    if kind == "guarded":
        return Finding(
            where=where,
            type_name=type_name,
            wrapped=False,
            connected=None,
            connection="",
            reason="Watched by safeclients.guarded, a detector, not a fix: every thread still "
            "shares one instance.",
            suggest="safeclients.per_thread, locked or pooled, once guarded has shown the race",
        )
    reason = f"already wrapped by safeclients.{kind}"
    if not policy.replaceable:
        reason += (
            " around an instance, not a factory: a forked worker cannot recreate it "
            "and will raise ForkedUseError (pass a factory)"
        )
    return Finding(
        where=where,
        type_name=type_name,
        reason=reason,
        suggest="nothing to do",
        connected=None,
        connection="",
        wrapped=True,
    )


def safety_of(profile: Profile) -> str:
    """The truth per client, from its profile: thread-safe or not, fork-aware or not."""
    threads = "thread-safe" if profile.thread_safe else "not thread-safe"
    if profile.fork_aware:
        fork = "fork-aware (it opens new connections in a forked child itself)"
    else:
        fork = "not fork-aware (a forked child keeps using the parent's connection)"
    return f"{threads}; {fork}"
