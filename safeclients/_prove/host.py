"""The proving ground's master: ``python -m safeclients._prove.host APP [server options]``.

Does what ``python -m server`` does (refuse bad settings, then run the master: bind, import
the app, fork the workers, supervise), with one step between the import and the fork: every
client the app holds (``slots.find`` over the app's package and ``SAFECLIENTS_PROVE_PACKAGES``)
is replaced with a reporting detector writing to ``SAFECLIENTS_PROVE_DIR``, and the clients
are described there (``clients.json``, with their connection state at that moment, just before
the fork). The workers inherit the detectors with the app, as they would inherit the clients.
Client profiles come from ``safeclients.profiles``, its entry points, and the modules named in
``SAFECLIENTS_PROVE_PROFILES`` (``--profiles``), imported before the app.

Runs as its own process, started by :class:`~safeclients._prove.ground.ProvingGround` (the
CLI, the pytest fixture), on its only thread until the server's master takes over. Exit
statuses are the server's (``master.EXIT_*``); an import that raised or exited is
``EXIT_APP_LOAD`` and the reason is written to ``SAFECLIENTS_PROVE_DIR/failed.txt`` as well as
to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from safeclients import profiles
from safeclients._prove import slots
from safeclients._prove._server import app_loader, config, errors, logs, master
from safeclients._prove.detector import Sink

DIR_ENV = "SAFECLIENTS_PROVE_DIR"
PACKAGES_ENV = "SAFECLIENTS_PROVE_PACKAGES"
PROFILES_ENV = "SAFECLIENTS_PROVE_PROFILES"
FAILED_FILE = "failed.txt"


def main(argv: Sequence[str]) -> int:
    directory = os.environ.get(DIR_ENV, "")
    if not directory or not os.path.isdir(directory):
        print(f"safeclients prove: {DIR_ENV} must name an existing directory", file=sys.stderr)
        return master.EXIT_CONFIG
    try:
        settings = config.parse(list(argv))
    except errors.ConfigError as exc:
        return _failed(directory, f"the server refused its settings: {exc}", master.EXIT_CONFIG)
    logs.setup(settings.access_log)
    profile_modules = [m for m in os.environ.get(PROFILES_ENV, "").split(",") if m]
    why = _load_profiles(profile_modules)
    if why is not None:
        return _failed(directory, why, master.EXIT_APP_LOAD)
    module_name = settings.app.partition(":")[0]
    try:
        app_loader.load(settings.app)
    except errors.AppLoadError as exc:
        return _failed(directory, str(exc), master.EXIT_APP_LOAD)
    except BaseException as exc:
        return _failed(directory, _import_failed(module_name, exc), master.EXIT_APP_LOAD)
    root = sys.modules[module_name]
    packages = [p for p in os.environ.get(PACKAGES_ENV, "").split(",") if p]
    places, unwatched, proxies = slots.find(slots.modules_of(root, packages))
    watching = slots.watch(places, Sink(directory))
    watching.write(directory, unwatched, proxies)
    logs.get().info(
        "safeclients prove: watching %d client%s of %s",
        watching.count,
        "" if watching.count == 1 else "s",
        module_name,
    )
    return master.Master(settings).run()


def _load_profiles(modules: list[str]) -> str | None:
    """Register the client profiles of the entry points and of each ``--profiles`` module;
    None when all went well, else why the app cannot be run."""
    try:
        profiles.load_entry_points()
    except Exception as exc:
        traceback.print_exc()
        return (
            "loading the entry points of group safeclients.profiles raised "
            f"{type(exc).__name__}: {exc}"
        )
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            return "the --profiles module: " + _import_failed(name, exc)
    return None


def _import_failed(name: str, exc: BaseException) -> str:
    """Why importing ``name`` ended early, as the end of a sentence (the traceback goes to
    stderr, into the server's log)."""
    if isinstance(exc, SystemExit):
        return (
            f"importing {name} called sys.exit({exc.code!r}): an app that exits at import "
            "cannot be run"
        )
    traceback.print_exception(exc)
    return f"importing {name} raised {type(exc).__name__}" + (f": {exc}" if str(exc) else "")


def _failed(directory: str, why: str, status: int) -> int:
    print(f"safeclients prove: could not run the app: {why}", file=sys.stderr)
    (Path(directory) / FAILED_FILE).write_text(why)
    return status


if __name__ == "__main__":
    status = main(sys.argv[1:])
    # Leave without joining threads the app started at import (the server's workers are gone by
    # now): an app's non-daemon thread must not keep the master alive until it is killed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
