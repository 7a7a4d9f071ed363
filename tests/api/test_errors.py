"""One table maps Penny's exceptions to HTTP statuses; every subtree of PennyError lands somewhere sane."""

from __future__ import annotations

import pytest

from assistant.api.errors import api_error_of
from assistant.calibration import CalibrationError
from assistant.errors import PennyError
from assistant.ledger import (
    AlreadyExists,
    BudgetExceeded,
    IdempotencyConflict,
    IdempotencyInProgress,
    LedgerError,
    NotFound,
)
from assistant.local.pool import PoolDeadlineExceeded, PoolOverloaded, PoolUnavailable
from assistant.local.registry import ModelError
from assistant.paid import PaidError


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (IdempotencyConflict("other body"), 422, "idempotency_key_reused"),
        (IdempotencyInProgress("running"), 409, "idempotency_key_in_progress"),
        (NotFound("no user"), 404, "not_found"),
        (AlreadyExists("taken"), 409, "already_exists"),
        (LedgerError("bad window"), 400, "invalid_request"),
        (PoolUnavailable("two workers failed"), 503, "local_tier_unavailable"),
        (PoolDeadlineExceeded("too slow"), 504, "local_tier_unavailable"),
        (CalibrationError("broken file"), 500, None),
    ],
)
def test_each_error_maps_to_one_status(exc: PennyError, status: int, code: str | None) -> None:
    error = api_error_of(exc)
    assert (error.status, error.code) == (status, code)
    if status == 500:
        assert error.message == "internal error; see the server log"  # internals stay in the log
    else:
        assert error.message == str(exc)  # the message says what to fix or when to retry


def test_budget_exceeded_is_a_429_with_retry_after() -> None:
    error = api_error_of(BudgetExceeded("daily budget used up", retry_after_s=42))
    assert error.status == 429 and error.kind == "insufficient_quota"
    assert error.headers == {"Retry-After": "42"}
    assert api_error_of(BudgetExceeded("total budget used up", retry_after_s=0)).headers == {}


def test_a_shed_request_is_a_503_with_retry_after_in_openais_shape() -> None:
    error = api_error_of(PoolOverloaded("overloaded; retry after 7 s", retry_after_s=7))
    assert (error.status, error.kind, error.code) == (503, "server_error", "overloaded")
    assert error.headers == {"Retry-After": "7"}
    assert error.body() == {
        "error": {
            "message": "overloaded; retry after 7 s",
            "type": "server_error",
            "param": None,
            "code": "overloaded",
        }
    }


def test_every_error_tree_has_one_root() -> None:
    for tree in (LedgerError, PaidError, PoolUnavailable, ModelError, CalibrationError):
        assert issubclass(tree, PennyError)
