"""Type-checked by mypy (scripts/test.sh): the proving ground's public surface carries its types.

Not a pytest module: nothing here runs.
"""

from __future__ import annotations

from typing_extensions import assert_type

import safeclients
from safeclients.prove import ProvingGround, Verdict, hammer


class Client:
    def submit(self, payload: bytes) -> bytes:
        return payload[::-1]


@safeclients.per_thread
def client() -> Client:
    return Client()


def use_prove() -> None:
    assert_type(hammer(client.submit, b"x", threads=2), Verdict)
    assert_type(hammer("app:client.submit", b"x"), Verdict)
    with ProvingGround("app:application", workers=1) as ground:
        assert_type(ground.url, str)
        assert_type(ground.worker_pids(), list[int])
        assert_type(ground.verdict(), Verdict)
