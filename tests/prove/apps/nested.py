"""Clients one level down: in a dict, as an attribute of a module-level object, in a tuple (which
cannot be changed in place), and the same instance under two names."""

from tests.prove.apps._fake import MeetingClient, app_calling


class Service:
    def __init__(self) -> None:
        self.client = MeetingClient()


CLIENTS = {"main": MeetingClient()}
service = Service()
frozen = (MeetingClient(),)
alias = CLIENTS["main"]

app = app_calling(lambda: CLIENTS["main"])
