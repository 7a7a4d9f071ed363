"""Compare the ledger's paid-tier totals with a provider's usage export, per day and model.

The export is a CSV with columns ``date, model, input_tokens, output_tokens, cost_usd`` (one row per day
and model, as OpenAI's usage export gives them; snapshot names like ``gpt-4o-mini-2024-07-18`` are mapped to
the price table's name). Rounding: the ledger rounds each call up to a whole micro-USD, so it may be above
the provider by up to one micro-USD per call; larger gaps, token differences and days only one side has are
reported as mismatches.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from assistant.ledger.errors import LedgerError
from assistant.ledger.ledger import Ledger
from assistant.ledger.prices import usd_to_micro

COLUMNS = ("date", "model", "input_tokens", "output_tokens", "cost_usd")


@dataclass(frozen=True)
class ProviderRow:
    day: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int


@dataclass(frozen=True)
class Difference:
    day: str
    model: str
    ledger_requests: int
    ledger_input: int
    provider_input: int
    ledger_output: int
    provider_output: int
    ledger_micro_usd: int
    provider_micro_usd: int

    @property
    def cost_diff_micro_usd(self) -> int:
        return self.ledger_micro_usd - self.provider_micro_usd

    @property
    def status(self) -> str:
        if self.provider_input == self.provider_output == self.provider_micro_usd == 0:
            return "missing at provider"
        if self.ledger_requests == 0 and self.ledger_micro_usd == 0:
            return "missing in ledger"
        tokens_match = (self.ledger_input, self.ledger_output) == (self.provider_input, self.provider_output)
        within_rounding = 0 <= self.cost_diff_micro_usd <= self.ledger_requests
        return "ok" if tokens_match and within_rounding else "mismatch"


def read_provider_csv(path: Path, ledger: Ledger) -> list[ProviderRow]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc}") from exc
    rows: list[ProviderRow] = []
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise LedgerError(
                f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}"
            )
        for line, record in enumerate(reader, start=2):
            try:
                day = date.fromisoformat(record["date"].strip()[:10]).isoformat()
                rows.append(
                    ProviderRow(
                        day=day,
                        model=ledger.prices.canonical(record["model"].strip()),
                        input_tokens=int(record["input_tokens"]),
                        output_tokens=int(record["output_tokens"]),
                        cost_micro_usd=usd_to_micro(record["cost_usd"].strip(), "cost_usd"),
                    )
                )
            except (ValueError, LedgerError) as exc:
                raise LedgerError(f"{path}:{line}: {exc}") from exc
    return rows


def reconcile(ledger: Ledger, provider: list[ProviderRow]) -> list[Difference]:
    """One line per (day, model) either side has, over the export's date range."""
    if not provider:
        return []
    totals: dict[tuple[str, str], list[int]] = {}
    for row in provider:
        acc = totals.setdefault((row.day, row.model), [0, 0, 0])
        acc[0] += row.input_tokens
        acc[1] += row.output_tokens
        acc[2] += row.cost_micro_usd
    days = sorted(row.day for row in provider)
    ours = ledger.paid_by_day_model(date.fromisoformat(days[0]), date.fromisoformat(days[-1]))
    out = []
    for day, model in sorted(set(totals) | set(ours)):
        requests, ours_in, ours_out, ours_cost = ours.get((day, model), (0, 0, 0, 0))
        theirs_in, theirs_out, theirs_cost = totals.get((day, model), [0, 0, 0])
        out.append(
            Difference(day, model, requests, ours_in, theirs_in, ours_out, theirs_out, ours_cost, theirs_cost)
        )
    return out
