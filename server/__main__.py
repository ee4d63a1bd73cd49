"""``python -m server MODULE:CALLABLE [options]``: refuse bad settings, then run the master."""

from __future__ import annotations

import sys

try:
    import httptools  # noqa: F401  (the parser's C core; checked here for a one-line answer)
except ImportError:
    sys.exit(
        "python -m server: error: httptools is not installed; "
        "install the server extra: pip install 'safeclients[server]'"
    )

from . import config, logs
from .errors import ConfigError
from .master import EXIT_CONFIG, Master


def main(argv: list[str] | None = None) -> int:
    try:
        settings = config.parse(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"python -m server: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.setup(settings.access_log)
    return Master(settings).run()


if __name__ == "__main__":
    sys.exit(main())
