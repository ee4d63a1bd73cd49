"""The Gearman trap under real servers: the unsafe global client fails under load, and every
safeclients variant gives zero failures over 2,000 checked requests at concurrency 32.
"""

from __future__ import annotations

import pytest

from examples.load import LoadResult, run_load
from tests.integration.conftest import KINDS, serve

pytestmark = pytest.mark.integration

REQUESTS = 2000
CONCURRENCY = 32
# The trap shows in tens to hundreds of the first 1,000 requests on every server we tried
# (fewest: gunicorn without --preload); a thread whose result went to another thread waits out
# the job timeout, so the unsafe runs are short and their timeouts tight.
TRAP_REQUESTS = 1000
TRAP_ATTEMPTS = 4
TRAP_JOB_TIMEOUT = "2"

# Every safe variant on ours and uWSGI (the two that import in the master the way most
# deployments do); a smaller set on gunicorn, whose two modes differ only in where the import
# happens.
SAFE_MATRIX = [
    *[("ours", v) for v in ("per_thread", "locked", "pooled")],
    *[("uwsgi", v) for v in ("per_thread", "locked", "pooled")],
    ("gunicorn", "locked"),
    ("gunicorn", "pooled"),
    ("gunicorn-preload", "per_thread"),
]


def _describe(result: LoadResult) -> str:
    return result.summary() + "".join(f"\n  e.g. {e}" for e in result.examples)


@pytest.mark.parametrize("kind", KINDS)
def test_unsafe_global_client_fails_under_load(kind: str, gearman_env: dict[str, str]) -> None:
    runs = []
    env = {**gearman_env, "GEARMAN_JOB_TIMEOUT": TRAP_JOB_TIMEOUT}
    for _ in range(TRAP_ATTEMPTS):
        with serve(kind, "examples.gearman.app_unsafe:application", env) as srv:
            result = run_load(srv.url, total=TRAP_REQUESTS, concurrency=CONCURRENCY, timeout=4.0)
        runs.append(result)
        if result.failures:
            break
    assert runs[-1].failures > 0, (
        f"the trap did not show under {kind}: {TRAP_ATTEMPTS} runs of {TRAP_REQUESTS} requests at "
        f"concurrency {CONCURRENCY} against one shared GearmanClient all succeeded:\n"
        + "\n".join(r.summary() for r in runs)
    )


@pytest.mark.parametrize(("kind", "variant"), SAFE_MATRIX)
def test_safeclients_variant_has_no_failures(
    kind: str, variant: str, gearman_env: dict[str, str]
) -> None:
    with serve(kind, f"examples.gearman.app_{variant}:application", gearman_env) as srv:
        result = run_load(srv.url, total=REQUESTS, concurrency=CONCURRENCY, timeout=10.0)
        log = srv.log_text()
    assert result.ok == REQUESTS, (
        f"{variant} under {kind}: {_describe(result)}\nserver log tail:\n{log[-2000:]}"
    )
