"""Client profiles: the one place that knows each client type.

A :class:`Profile` says, for one client class named by its qualified name
(``"pymysql.connections.Connection"``): why it is unsafe (the audit prints it), which policy
fits it, the sources backing each claim, how to describe its open connection (a probe that
never sends), which exceptions mean "this connection is dead, discard it", how to close it,
how to check it, which of its methods return objects bound to the instance (a cursor, a
channel, a pipeline), and whether it is safe across threads (unsafe only across forks).

Matching is by qualified name so that nothing optional is ever imported: ``profile_for(cls)``
walks ``cls.__mro__`` and the most derived registered class wins; a registered name that is an
alias (``"gearman.GearmanClient"``) also matches the class it names once its package is
imported. Exception classes in ``broken`` are matched the same way over the exception's MRO;
built-in exceptions are named ``"builtins.OSError"``.

The shipped profiles live in ``safeclients._profile_table`` (each claim cited there).
``register()`` adds or replaces one; third-party packages add theirs through the entry point
group ``safeclients.profiles`` (each entry point a callable returning an iterable of Profile),
loaded by ``load_entry_points()``. The registry loads them itself, once, right after the
shipped table and before the first registration or lookup, so that the policies use them as
the audit does (a package's profile replaces a shipped one; an app's ``register()`` replaces
both); the audit's ``--profiles MODULE`` imports a module whose import calls ``register()``.

``close`` and ``check`` are plain functions of a live client that import their package lazily
(or use attribute calls only). A ``close`` for a client that may already be dead does not raise
for "already closed". ``check`` may send (a ping); a probe never does.

Process and thread: ``register``/``unregister`` may be called from any thread (an app's
import-time code); lookups take a snapshot under the registry lock. Across a fork: the
registry is plain data; the child inherits it and holds no resource from it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable

from safeclients._profile import POLICIES, Profile
from safeclients._profile_table import SHIPPED

__all__ = [
    "Profile",
    "POLICIES",
    "register",
    "unregister",
    "profile_for",
    "broken_by",
    "load_entry_points",
    "registered",
    "registered_as",
    "qualname",
]

# Guards _registry: register() may be called from any thread (an app's import-time code).
_registry_lock = threading.Lock()
_registry: dict[str, Profile] = {}
_shipped_loaded = False  # set once safeclients._profile_table is in _registry
# Set once the entry points are loaded (or being loaded: their own register() calls must not
# load them again). Guarded by _entry_points_lock, held while loading.
_entry_points_loaded = False
_entry_points_lock = threading.RLock()


def register(profile: Profile) -> None:
    """Add ``profile``; it replaces an entry with the same qualname."""
    if not isinstance(profile, Profile):
        raise TypeError(
            f"register() takes a safeclients.profiles.Profile, not {type(profile).__name__}."
        )
    _ensure_shipped()
    with _registry_lock:
        _registry[profile.qualname] = profile


def unregister(qualname: str) -> None:
    """Remove the entry registered under ``qualname`` (no error when absent)."""
    _ensure_shipped()
    with _registry_lock:
        _registry.pop(qualname, None)


def registered_as(qualname: str) -> Profile | None:
    """The profile registered under exactly ``qualname`` (no alias resolution), or None."""
    _ensure_shipped()
    with _registry_lock:
        return _registry.get(qualname)


def registered() -> dict[str, Profile]:
    """A snapshot of the registry, keyed by each class's own qualified name where the name
    registered is an alias of an imported class (registration order kept; a later
    registration of the same class wins)."""
    _ensure_shipped()
    with _registry_lock:
        entries = dict(_registry)
    resolved: dict[str, Profile] = {}
    for name, profile in entries.items():
        cls = _lookup_loaded(name)
        resolved[qualname(cls) if cls is not None else name] = profile
    return resolved


def profile_for(cls: type) -> Profile | None:
    """The profile of the most derived registered class in ``cls.__mro__``, or None."""
    known = registered()
    for klass in cls.__mro__:
        profile = known.get(qualname(klass))
        if profile is not None:
            return profile
    return None


def broken_by(profile: Profile, exc: BaseException) -> bool:
    """True when a class named in ``profile.broken`` is in ``type(exc).__mro__``."""
    if not profile.broken:
        return False
    names = set(profile.broken)
    for name in profile.broken:
        cls = _lookup_loaded(name)
        if cls is not None:
            names.add(qualname(cls))
    return any(qualname(klass) in names for klass in type(exc).__mro__)


def load_entry_points(group: str = "safeclients.profiles") -> list[str]:
    """Register the profiles of every entry point in ``group``; return their names.

    Each entry point is a callable returning an iterable of Profile. An entry point that
    fails to load, or yields something that is not a Profile, raises (nothing after it is
    loaded): a half-known client is worse than a refusal. The registry calls it itself for
    the default group, once, before its first lookup or registration (see the module).
    """
    global _entry_points_loaded
    import importlib.metadata  # here: the policies import this module, and rarely need this

    _ensure_table()
    loaded: list[str] = []
    with _entry_points_lock:
        default = group == "safeclients.profiles"
        # Set first: an entry point's module may call register() as it is imported, and that
        # must not load the entry points again (a circular import). Reset if loading fails:
        # every later lookup refuses again until it is fixed.
        if default:
            _entry_points_loaded = True
        try:
            for entry_point in importlib.metadata.entry_points(group=group):
                make = entry_point.load()
                profiles: Iterable[object] = make()
                for profile in profiles:
                    if not isinstance(profile, Profile):
                        raise TypeError(
                            f"Entry point {entry_point.name!r} ({entry_point.value}) of "
                            f"group {group!r} yielded a {type(profile).__name__}, not a "
                            "safeclients.profiles.Profile."
                        )
                    register(profile)
                loaded.append(entry_point.name)
        except BaseException:
            if default:
                _entry_points_loaded = False
            raise
    return loaded


def qualname(cls: type) -> str:
    """``"module.Qualname"`` of a class (``"builtins.OSError"`` for a built-in)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _lookup_loaded(name: str) -> type | None:
    """The class ``name`` refers to when its module is already imported (nothing new is
    imported), else None."""
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


def _ensure_shipped() -> None:
    """Register the shipped table once, then the entry points' profiles, before anything else
    is registered (so a later registration replaces them, never the reverse)."""
    if _entry_points_loaded:
        return
    _ensure_table()
    with _entry_points_lock:
        if not _entry_points_loaded:
            load_entry_points()


def _ensure_table() -> None:
    global _shipped_loaded
    with _registry_lock:
        if not _shipped_loaded:
            for profile in SHIPPED:
                _registry[profile.qualname] = profile
            _shipped_loaded = True
