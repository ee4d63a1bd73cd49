"""The flatness check of the soak tests has the power to see a leak, and stays quiet without one.

Table-driven checks of ``_sampling.growth_problems`` on made-up samples (no processes), then a
live run: ``leaky_app`` on our server, recycled every 1,000 requests, must be reported for fds
and RSS; the same load against the non-leaking ``hello`` app must not.
"""

from __future__ import annotations

import pytest

from server.testing import ServerProcess
from tests.reliability._sampling import MB, Life, Sample, Sampler, Slack, growth_problems
from tests.reliability._traffic import Load

SLACK = Slack(fds=10)


def _sampler(*lives: list[tuple[int, int, int]]) -> Sampler:
    """A Sampler that never ran, filled with lives of (fds, threads, rss MB) readings."""
    sampler = Sampler(master_pid=1, list_workers=list)
    for pid, readings in enumerate(lives, start=100):
        sampler.workers[pid] = Life(
            pid, [Sample(float(t), f, th, r * MB) for t, (f, th, r) in enumerate(readings)]
        )
    return sampler


FLAT = [(20, 9, 21)] * 9
CASES = [
    ("flat", [FLAT, FLAT, FLAT, FLAT], []),
    ("fd leak within a life", [FLAT, FLAT, [(20 + 5 * i, 9, 21) for i in range(9)]], ["fds"]),
    ("rss leak within a life", [FLAT, [(20, 9, 21 + i) for i in range(9)]], ["rss"]),
    ("thread leak within a life", [[(20, 9 + i, 21) for i in range(9)], FLAT], ["threads"]),
    ("later lives start higher", [FLAT, FLAT, [(40, 9, 21)] * 9], ["fds"]),
    ("short lives judged only against the first", [FLAT, FLAT, [(20, 9, 30)] * 2], ["rss"]),
    ("fd noise within the slack", [FLAT, [(20 + i % 3 * 4, 9, 21) for i in range(9)]], []),
]


@pytest.mark.parametrize("lives,metrics", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_growth_problems_table(lives: list[list[tuple[int, int, int]]], metrics: list[str]) -> None:
    problems = growth_problems(_sampler(*lives), generation=2, slack=SLACK)
    named = sorted({m for m in ("fds", "threads", "rss") for p in problems if f": {m} " in p})
    assert named == metrics, problems


@pytest.mark.integration
@pytest.mark.parametrize(
    "app,leaks",
    [("tests.reliability.leaky_app:application", True), ("tests.server.apps:hello_raw", False)],
)
def test_live_leak_is_seen(app: str, leaks: bool) -> None:
    with ServerProcess(app, workers=2, threads=4, args=["--max-requests", "1000"]) as srv:
        with Sampler(srv.pid, interval=0.05) as sampler:
            load = Load(
                srv.url, concurrency=8, limit=5000, timeout=10.0, prefix="leak", keep_ok=False
            ).start()
            assert load.wait_done(5000, timeout=120.0), f"load stalled: {load.counts()}"
            load.stop()
    problems = growth_problems(sampler, generation=2, slack=SLACK)
    if leaks:
        assert any(": fds " in p for p in problems), problems
        assert any(": rss " in p for p in problems), problems
    else:
        assert problems == [], problems
