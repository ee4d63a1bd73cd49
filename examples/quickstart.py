# The README's quick start: 100 Gearman jobs from 8 threads through one module-global client.
# Needs gearmand and a worker for b"reverse" (python -m examples.gearman.worker).
import os
from concurrent.futures import ThreadPoolExecutor

import gearman  # pip install '.[gearman]': pygearman

import safeclients

SERVERS = os.environ.get("GEARMAN_SERVERS", "127.0.0.1:4730").split(",")


@safeclients.per_thread(close=lambda c: c.shutdown())
def gearman_client() -> gearman.GearmanClient:
    return gearman.GearmanClient(SERVERS)


def reverse(text: str) -> str:
    # The client's own API, unchanged (mypy and your IDE see a GearmanClient). pygearman: the
    # task name is bytes, and without poll_timeout= submit_job() returns before the job is done.
    request = gearman_client.submit_job(b"reverse", text.encode(), poll_timeout=5.0)
    if not request.complete:
        raise TimeoutError(f"job {text!r} not done within 5 s: is a b'reverse' worker running?")
    result: bytes = request.result
    return result.decode()


with ThreadPoolExecutor(max_workers=8) as pool:
    words = [f"job-{n}" for n in range(100)]
    results = list(pool.map(reverse, words))
assert results == [word[::-1] for word in words]
clients = safeclients.stats(gearman_client).created
print(f"{len(results)} jobs, all answered right, through {clients} clients (one per thread)")
