"""A hand-written threading.local whose client was made and connected at import (a warm-up):
the master's main thread holds it, so every worker's main thread (core 0) uses that one."""

import threading

from tests.prove.apps._fake import MeetingClient, app_calling

_local = threading.local()


def get_client() -> MeetingClient:
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = MeetingClient().connect()
    return client


get_client()  # the warm-up, in the master

app = app_calling(get_client)
