"""Prove your own app: run it as production would, watch its clients, get a verdict.

* :class:`ProvingGround` runs a WSGI app (``"myapp.wsgi:app"``) under the included
  prefork-threaded server on uWSGI's model (imported once in a master, forked into N workers of M
  threads, core 0 on each worker's main thread), with every client the app holds (module
  globals, and one level down: a dict's items, a module-level object's attributes, the value a
  ``threading.local`` holds in the master) replaced, before the fork, by a reporting detector.
  Detectors report, never raise: the app runs as it would in production. ``verdict()`` says
  which client was used by two threads at once or in two processes, by whom and from where.
  ``python -m safeclients prove MODULE:APP`` is the same from the command line; the pytest
  plugin's ``proving_ground`` fixture the same in a test.
* :func:`hammer` calls a function or a client's method from N threads at once, then across a
  fork, and raises :class:`UnsafeUseFound` (an ``AssertionError``: it fails the test) on unsafe
  use.

Both need the server extra (``pip install 'safeclients[server]'``) only for ``ProvingGround``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safeclients._prove.errors import (
    HammerCallsFailed,
    HammerTimeout,
    NothingWatched,
    ProveError,
    ProvingGroundNotStarted,
    UnsafeUseFound,
)
from safeclients._prove.hammer import hammer
from safeclients._prove.slots import Client
from safeclients._prove.verdict import Unsafe, Use, Verdict

if TYPE_CHECKING:
    from safeclients._prove.ground import ProvingGround

__all__ = [
    "ProvingGround",
    "hammer",
    "Verdict",
    "Unsafe",
    "Use",
    "Client",
    "ProveError",
    "ProvingGroundNotStarted",
    "UnsafeUseFound",
    "HammerCallsFailed",
    "HammerTimeout",
    "NothingWatched",
]


def __getattr__(name: str) -> Any:
    # ProvingGround imports the server, which needs httptools (the server extra): only when
    # asked for, so that hammer() works with the library alone.
    if name == "ProvingGround":
        from safeclients._prove.ground import ProvingGround

        return ProvingGround
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
