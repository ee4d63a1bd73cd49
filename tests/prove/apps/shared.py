"""The trap: one module-global client, shared by every thread (unconnected at import)."""

from tests.prove.apps._fake import MeetingClient, app_calling

client = MeetingClient()

app = app_calling(lambda: client)
