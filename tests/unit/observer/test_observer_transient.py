"""Which observer failures are outages (retried, never counted towards setting an exchange aside)."""

from __future__ import annotations

import asyncpg
import pytest

from memgate_core.errors import UpstreamError
from memgate_observer.consumer import transient


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(),
    TimeoutError(),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),  # lost a race with a store or delete
    asyncpg.exceptions.SerializationError("could not serialize access"),
    asyncpg.exceptions.AdminShutdownError("terminating connection"),
    UpstreamError("the provider is down", status=503),
])
def test_outages_and_rolled_back_transactions_are_transient(error: BaseException) -> None:
    assert transient(error)


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.UntranslatableCharacterError("NUL in text"),  # the exchange itself: never better
    asyncpg.exceptions.UniqueViolationError("duplicate key"),
    ValueError("a batch holds exchanges of one thread"),
])
def test_what_is_wrong_with_the_exchanges_is_not(error: BaseException) -> None:
    assert not transient(error)
