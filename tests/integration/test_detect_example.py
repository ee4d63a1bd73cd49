"""``examples/gearman/detect.py``: the detector names both sides of a real race on a
GearmanClient."""

from __future__ import annotations

import re

import pytest

from examples.gearman import detect
from examples.support.gearmand import Gearmand, Workers

ATTEMPTS = 3  # two threads x 50 jobs released by a barrier overlap at once in practice


def test_detector_names_both_threads_and_methods(
    gearmand: Gearmand, gearman_workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    gearman_workers.ensure()
    out = ""
    for _ in range(ATTEMPTS):
        detect.run(gearmand.address)
        out = capsys.readouterr().out
        if re.search(r"conflicts=[1-9]", out):
            break
    assert re.search(r"conflicts=[1-9]", out), (
        f"no overlap in {ATTEMPTS} runs of 2 x 50 jobs:\n{out}"
    )
    assert "called GearmanClient.submit_job() while thread 'request-" in out
    assert "was still inside GearmanClient.submit_job()" in out
    assert "Stack of thread 'request-" in out
    assert "gearman/" in out, "the other thread's stack should reach into the client"
