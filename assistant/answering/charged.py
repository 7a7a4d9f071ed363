"""A paid call outside a user's request, charged to the ledger like any other: reserve the worst case,
mark it sent, call, settle at the real usage, or release on failure.

Calibration (questions written by the paid tier) and shadow sampling (a served local answer checked by
the paid tier) both spend real money on behalf of a system account; neither may spend off the books.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.ledger import Ledger, Principal, Usage
    from assistant.paid import PaidClient, PaidResult


def charged_chat(
    paid: PaidClient,
    ledger: Ledger,
    principal: Principal,
    messages: Sequence[dict[str, str]],
    *,
    request_id: str,
    max_tokens: int,
) -> tuple[PaidResult, int]:
    """One paid completion charged to ``principal``: (result, cost in micro-USD).

    Raises the ledger's ``BudgetExceeded`` before calling when the worst case does not fit, and the paid
    client's ``PaidError`` after releasing the reservation when the call fails.
    """
    reservation = ledger.reserve(
        request_id=request_id,
        principal=principal,
        model=paid.model,
        prompt_tokens=paid.reserve_prompt_tokens(messages),
        max_completion_tokens=max_tokens,
        sent=True,
    )
    try:
        result = paid.chat(messages, max_tokens=max_tokens)
    except BaseException as exc:  # a failed call, or a stop mid-call: never leave money held
        ledger.release(reservation, getattr(exc, "reason", type(exc).__name__))
        raise
    return result, ledger.settle(reservation, ledger_usage(result))


def ledger_usage(result: PaidResult) -> Usage:
    """A paid result's usage as the ledger settles it (cached tokens never above prompt tokens)."""
    from assistant.ledger import Usage

    usage = result.usage
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_prompt_tokens=min(usage.cached_prompt_tokens, usage.prompt_tokens),
        estimated=usage.estimated,
    )
