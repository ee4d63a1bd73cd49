"""Import ``MODULE:CALLABLE``: in the master before the fork (default), or in each worker after
it (``--lazy-apps``). The difference is the trap safeclients exists for: an app imported once in
the master shares its module globals, copied, with every worker."""

from __future__ import annotations

import importlib
import sys

from .errors import AppLoadError
from .wsgi import WSGIApp


def load(spec: str) -> WSGIApp:
    """Return the callable named by ``spec``; AppLoadError if it is not there or not callable."""
    module_name, _, attr = spec.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # run from the repository root, as ``python -m`` does
    module = importlib.import_module(module_name)
    app = module
    for part in attr.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise AppLoadError(f"Module {module_name!r} has no attribute {attr!r}.") from None
    if not callable(app):
        raise AppLoadError(f"{spec} is a {type(app).__name__}, not a WSGI callable.")
    return app
