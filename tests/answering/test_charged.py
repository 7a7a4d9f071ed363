"""A paid call charged to the ledger holds enough: the paid tier bills with its own tokenizer and chat
template, which count more than tiktoken does, and the reservation's headroom covers that (SQLite and
PostgreSQL, against the fake paid upstream)."""

from __future__ import annotations

import logging

import pytest

from assistant.answering.charged import charged_chat
from assistant.ledger import Ledger, Principal
from assistant.paid import PaidClient, tokens
from tests.support.fake_paid import FakePaid, Reply

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "user", "content": "Write one short question about Normandy. Reply with only the question."}
]
# What qwen2.5-1.5b bills above tiktoken's count for a prompt without a system message: its chat template
# adds a default system prompt (measured against `penny paid serve`: 22 tokens on short prompts).
TEMPLATE_TOKENS = 22


def bill_like_qwen(fake: FakePaid) -> int:
    billed = tokens.count_messages(MESSAGES) + TEMPLATE_TOKENS
    fake.reset()
    fake.default = Reply(text="Where is Normandy?", prompt_tokens=billed, completion_tokens=16)
    return billed


def call(ledger: Ledger, client: PaidClient, request_id: str) -> int:
    user = ledger.add_user(request_id)
    principal = Principal(user.id, user.name)
    _result, cost = charged_chat(client, ledger, principal, MESSAGES, request_id=request_id, max_tokens=16)
    return cost


def test_the_reservation_covers_a_template_the_count_cannot_see(
    ledger: Ledger, paid_server: tuple[FakePaid, str], caplog: pytest.LogCaptureFixture
) -> None:
    billed = bill_like_qwen(paid_server[0])
    client = PaidClient(paid_server[1], MODEL, "sk-test", timeout_s=5, max_retries=0)
    held = client.reserve_prompt_tokens(MESSAGES)
    assert held >= billed > client.estimate_prompt_tokens(MESSAGES)

    with caplog.at_level(logging.WARNING, logger="penny.ledger"):
        cost = call(ledger, client, "with-headroom")
    assert cost <= ledger.prices.worst_case_micro_usd(MODEL, held, 16)
    assert not [r for r in caplog.records if "above its reserved worst case" in r.getMessage()]

    # Without the headroom the same call settles above what was held: a hard limit could be passed.
    bare = PaidClient(
        paid_server[1], MODEL, "sk-test", timeout_s=5, max_retries=0, prompt_token_margin=0,
        prompt_token_overhead=0,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="penny.ledger"):
        call(ledger, bare, "without-headroom")
    assert [r for r in caplog.records if "above its reserved worst case" in r.getMessage()]


def test_headroom_is_a_share_and_a_fixed_amount() -> None:
    assert tokens.with_headroom(500, 0.1, 32) == 582
    assert tokens.with_headroom(7, 0.1, 0) == 8  # rounds up: never holds less than the share
    assert tokens.with_headroom(500, 0, 0) == 500
