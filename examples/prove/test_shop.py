"""How a team keeps its app from regressing, with the safeclients pytest plugin (installed
with safeclients: nothing to configure). Run from the repository root:

    .venv/bin/python -m pytest examples/prove -p no:cacheprovider

``test_the_fixed_app_*`` pass. ``test_the_unsafe_app_*`` are marked ``xfail(strict=True)``:
they show what a regression looks like (the failure message names the global, both threads,
both call sites and the policy to use), and the run fails if they ever stop failing.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from examples.prove import shop, shop_fixed
from safeclients.prove import ProvingGround

URL_TIMEOUT = 10


def hit(ground: ProvingGround, path: str, times: int, concurrency: int = 8) -> None:
    """GET ``path`` ``times`` times, ``concurrency`` at once; each must answer 200."""

    def get(_: int) -> int:
        with urllib.request.urlopen(ground.url + path, timeout=URL_TIMEOUT) as response:
            return int(response.status)

    with ThreadPoolExecutor(concurrency) as pool:
        assert set(pool.map(get, range(times))) == {200}


def test_the_fixed_app_under_the_proving_ground(
    proving_ground: Callable[..., ProvingGround],
) -> None:
    ground = proving_ground("examples.prove.shop_fixed:app", workers=2, threads=4)
    assert len(ground.worker_pids()) == 2
    hit(ground, "/orders", 40)
    verdict = ground.verdict()
    assert verdict.unsafe == [], verdict.render()
    assert verdict.proxies == 1  # shop_fixed.db, a safeclients proxy


def test_the_fixed_query_from_threads_and_across_a_fork(hammer: Callable[..., object]) -> None:
    hammer(shop_fixed.count_orders, threads=8, calls=20)


@pytest.mark.xfail(strict=True, reason="the unsafe app: a shared connection, opened at import")
def test_the_unsafe_query_from_threads_and_across_a_fork(hammer: Callable[..., object]) -> None:
    hammer(shop.count_orders, threads=8, calls=20)


@pytest.mark.xfail(strict=True, reason="the unsafe app: a shared connection, opened at import")
def test_the_unsafe_app_under_the_proving_ground(
    proving_ground: Callable[..., ProvingGround],
) -> None:
    ground = proving_ground("examples.prove.shop:app", workers=2, threads=4)
    hit(ground, "/orders", 40)
    ground.stop()  # every worker done: the verdict is complete
    assert ground.verdict().unsafe == [], ground.verdict().render()
