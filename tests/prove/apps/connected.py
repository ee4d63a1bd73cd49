"""A module-global client connected at import: every worker inherits the connection."""

from tests.prove.apps._fake import MeetingClient, app_calling

client = MeetingClient().connect()

app = app_calling(lambda: client)
