"""Limits a policy is configured with (pool size, wait timeout), validated when a proxy is made.

A limit that could never work is refused with a sentence before any client exists: a pool that
can hand out nothing, a negative wait, ``nan`` (every comparison with it is false) or an infinite
or huge number of seconds (``threading`` waits overflow past about 292 years: ``OverflowError``
in whichever caller happens to wait). Waiting without limit is spelled ``timeout=None``.
"""

from __future__ import annotations

import math
import threading

DEFAULT_SIZE = 4
DEFAULT_TIMEOUT = 5.0

# The longest wait threading accepts (seconds); beyond it, use timeout=None.
MAX_TIMEOUT = threading.TIMEOUT_MAX


def validate_size(kind: str, size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{kind}(size=...) must be an int >= 1, got {size!r}")
    return size


def validate_timeout(kind: str, timeout: object) -> float | None:
    """``timeout`` as float seconds, or None for "wait without limit"; ValueError otherwise."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(
            f"{kind}(timeout=...) must be a number of seconds >= 0, or None to wait without "
            f"limit, got {timeout!r}"
        )
    seconds = float(timeout)
    if math.isnan(seconds) or seconds < 0 or seconds > MAX_TIMEOUT:
        raise ValueError(
            f"{kind}(timeout=...) must be between 0 and {MAX_TIMEOUT:g} seconds, or None to "
            f"wait without limit, got {timeout!r}"
        )
    return seconds
