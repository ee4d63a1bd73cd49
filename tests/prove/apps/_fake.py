"""``MeetingClient``: a client whose calls make two threads meet inside it.

Each call waits (bounded) at a barrier of two parties, so the first two calls that run at the
same time in one process are both inside the client at once: the overlap the detector must see,
made certain by an event rather than by luck or sleeps. A call alone at the barrier gives up
after ``MEET_TIMEOUT`` and breaks it; calls after that pass straight through.

``connect()`` opens a (pretend) connection: the profile's probe reports it, so the proving
ground knows whether the instance held one at the fork. Registered as a client profile on
import, as an app would register its own client type.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from safeclients import profiles

MEET_TIMEOUT = 2.0

M = TypeVar("M", bound="Meeting")


class Meeting:
    """The behaviour; ``MeetingClient`` is the registered client type, ``UnknownClient`` one no
    profile names (until ``tests.prove.apps.unknown_profiles`` registers it)."""

    def __init__(self) -> None:
        self.meeting = threading.Barrier(2)
        self.connected_by: int | None = None
        self.calls = 0

    def connect(self: M) -> M:
        self.connected_by = os.getpid()
        return self

    def call(self) -> int:
        try:
            self.meeting.wait(MEET_TIMEOUT)
        except threading.BrokenBarrierError:
            pass
        self.calls += 1
        return os.getpid()

    def close(self) -> None:
        self.connected_by = None


class MeetingClient(Meeting):
    pass


class UnknownClient(Meeting):
    pass


def _probe(client: Meeting) -> str | None:
    return f"pretend connection of pid {client.connected_by}" if client.connected_by else None


profiles.register(
    profiles.Profile(
        qualname=f"{__name__}.MeetingClient",
        reason="A test client: its calls wait for each other.",
        suggest="per_thread",
        sources=(),
        probe=_probe,
    )
)


def app_calling(
    get_client: Callable[[], Meeting],
) -> Callable[[dict[str, object], Callable[..., object]], list[bytes]]:
    """A WSGI app that calls ``get_client().call()`` on every request and answers its pid."""

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        body = str(get_client().call()).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return app
