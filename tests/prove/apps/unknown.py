"""A shared global of a client type no profile names: invisible to prove until registered."""

from tests.prove.apps._fake import UnknownClient, app_calling

client = UnknownClient()

app = app_calling(lambda: client)
