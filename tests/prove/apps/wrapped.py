"""The fix: the same client behind safeclients.per_thread (nothing to watch)."""

import safeclients
from tests.prove.apps._fake import MeetingClient, app_calling


@safeclients.per_thread
def client() -> MeetingClient:
    return MeetingClient().connect()


app = app_calling(lambda: client)
