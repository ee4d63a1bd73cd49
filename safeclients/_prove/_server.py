"""The proving ground's server package, wherever it is installed.

The wheel ships the repository's ``server/`` as ``safeclients.server`` (``pip install
'safeclients[server]'``; ``[tool.setuptools] package-dir`` in pyproject.toml); a clone has it
at the top level, where ``python -m server`` runs it. Its imports are relative, so the same
files work under either name. mypy checks against the clone's layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server import app_loader, config, errors, logs, master, testing
else:
    try:
        from safeclients.server import app_loader, config, errors, logs, master, testing
    except ModuleNotFoundError as exc:
        if exc.name != "safeclients.server":
            raise  # the package is there, but something it needs is not (httptools)
        from server import app_loader, config, errors, logs, master, testing

__all__ = ["app_loader", "config", "errors", "logs", "master", "testing", "PACKAGE"]

#: The package's importable name here: ``safeclients.server`` or ``server``.
PACKAGE = master.__name__.rpartition(".")[0]
