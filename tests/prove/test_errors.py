"""The proving ground's errors (``safeclients._prove.errors``): one base, picklable, and the
ones ``hammer`` raises fail a test (``AssertionError``) rather than error it."""

from __future__ import annotations

import pickle

import pytest

from safeclients import SafeClientsError
from safeclients.prove import (
    HammerCallsFailed,
    HammerTimeout,
    NothingWatched,
    ProveError,
    ProvingGroundNotStarted,
    UnsafeUseFound,
)


@pytest.mark.parametrize(
    "error",
    [
        ProveError("x"),
        ProvingGroundNotStarted("app: why", "the log"),
        UnsafeUseFound("report"),
        HammerCallsFailed("trace"),
        HammerTimeout("late"),
        NothingWatched("nothing"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_error_pickles_with_its_message(error: ProveError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert isinstance(copy, SafeClientsError)
    if isinstance(error, ProvingGroundNotStarted):
        assert isinstance(copy, ProvingGroundNotStarted) and copy.log == "the log"


def test_what_hammer_finds_fails_a_test_and_a_bad_target_is_a_value_error() -> None:
    for failure in (UnsafeUseFound, HammerCallsFailed, HammerTimeout):
        assert issubclass(failure, AssertionError)
    assert issubclass(NothingWatched, ValueError)
