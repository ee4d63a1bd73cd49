"""The pytest plugin (entry point ``pytest11``): prove your app in your own test suite.

Fixtures:

* ``proving_ground``: a function ``proving_ground("myapp.wsgi:app", workers=2, threads=4,
  **options)`` that starts the app under the proving ground (see
  :class:`safeclients.prove.ProvingGround`) and returns it running: ``.url``,
  ``.worker_pids()``, ``.log_text()``, ``.verdict()``. Every ground it started is stopped when
  the test ends, pass or fail (its process group killed if it does not stop in time).
* ``hammer``: :func:`safeclients.prove.hammer`, which fails the test on a client used by two
  threads at once or in two processes.

::

    def test_no_shared_client(proving_ground):
        ground = proving_ground("myapp.wsgi:app")
        urllib.request.urlopen(ground.url + "/orders").read()
        assert ground.verdict().unsafe == []

    def test_cache_is_safe(hammer):
        hammer(myapp.cache.get, "key")

Runs in the pytest process. Every pytest run of an environment with safeclients installed loads
the plugin, which imports what ``import safeclients`` does and nothing more: the proving ground
is imported by the first test that asks for a fixture, and the server extra (httptools) is
needed only by ``proving_ground``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from safeclients.prove import ProvingGround

__all__ = ["proving_ground", "hammer"]


@pytest.fixture
def proving_ground() -> Iterator[Callable[..., ProvingGround]]:
    """Start apps under the proving ground for this test; all are stopped at its end."""
    from safeclients.prove import ProvingGround

    started: list[ProvingGround] = []

    def start(app: str, **options: Any) -> ProvingGround:
        ground = ProvingGround(app, **options)
        started.append(ground)
        return ground.start()

    try:
        yield start
    finally:
        for ground in reversed(started):
            ground.stop()


@pytest.fixture
def hammer() -> Callable[..., object]:
    """:func:`safeclients.prove.hammer`: fails the test on unsafe use of a client."""
    from safeclients.prove import hammer

    return hammer
