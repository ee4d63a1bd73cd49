"""An app whose import waits (for a server that never answers, say): the proving ground gives
up after --start-timeout."""

import threading

threading.Event().wait(120)


def app(environ: object, start_response: object) -> list[bytes]:
    return []
