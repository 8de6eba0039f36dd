"""Which failures are a database outage (503) and which are bugs (500, with their trace)."""

from __future__ import annotations

import asyncpg
import msgspec

from memgate_edge.errors import unexpected_error
from memgate_store import unreachable


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_postgres_going_away_is_an_outage_and_other_os_errors_are_not() -> None:
    assert unreachable(asyncpg.exceptions.CannotConnectNowError("starting up"))
    assert unreachable(asyncpg.exceptions.ConnectionDoesNotExistError("gone"))
    assert unreachable(asyncpg.exceptions.TooManyConnectionsError("full"))
    # An OSError counts only when raised inside asyncpg (connecting, reading its socket).
    assert not unreachable(_raised(ConnectionRefusedError(111, "refused")))
    assert not unreachable(_raised(FileNotFoundError(2, "no template")))
    assert not unreachable(_raised(TimeoutError()))
    assert not unreachable(ValueError("bug"))


def test_an_outage_is_a_503_and_a_bug_a_500() -> None:
    outage = unexpected_error(None, asyncpg.exceptions.AdminShutdownError("shutting down"))  # type: ignore[arg-type]
    assert outage.status_code == 503 and outage.headers["Retry-After"] == "5"
    assert msgspec.to_builtins(outage.content)["error"]["code"] == "database_unavailable"
    bug = unexpected_error(None, _raised(FileNotFoundError(2, "no template")))  # type: ignore[arg-type]
    assert bug.status_code == 500
