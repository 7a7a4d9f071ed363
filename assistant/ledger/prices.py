"""The price table: per-model token prices from a versioned TOML file, and cost arithmetic in micro-USD.

Prices are read as decimals and held as integer micro-USD per 1M tokens, so no float ever touches money.
A call's cost is rounded up once, per call, to a whole micro-USD: we may over-count by < $0.000001 per
call, never under-count. The same holds for Penny's own compute (instance time) and for a day of storage.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from assistant.ledger.errors import PriceTableError, UnknownModelPrice
from assistant.ledger.records import Usage

MICRO = 1_000_000
PER_TOKENS = 1_000_000  # prices are quoted per 1M tokens
PRICE_FIELDS = ("input", "cached_input", "output")
GB = 2**30  # storage is billed per GB-month with GB = 2^30 bytes


def usd_to_micro(value: Any, what: str) -> int:
    """Exact USD (number or string) → integer micro-USD; refuses values with sub-micro-USD digits."""
    try:
        amount = Decimal(str(value)) * MICRO
    except InvalidOperation as exc:
        raise PriceTableError(f"{what}: {value!r} is not a number") from exc
    if amount < 0 or amount != amount.to_integral_value():
        raise PriceTableError(f"{what}: {value!r} must be >= 0 with at most 6 decimal places")
    return int(amount)


def format_usd(micro_usd: int) -> str:
    """$1.50, $0.000195: cents always shown, sub-cent digits only when there are any."""
    text = f"{Decimal(micro_usd) / MICRO:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass(frozen=True)
class ModelPrice:
    model: str
    input_micro_usd_per_1m: int
    cached_input_micro_usd_per_1m: int
    output_micro_usd_per_1m: int
    effective: date
    source: str
    aliases: tuple[str, ...] = ()
    priced_as: str | None = None
    # P(the paid answer is right | the local one is wrong) stated for a model no calibration has labels
    # for (assistant/calibration/stamp.py: PaidModel), with where the number comes from. Not money: never
    # inherited through priced_as (a stand-in priced as gpt-4o does not answer like it).
    paid_helps_prior: float | None = None
    paid_helps_prior_source: str | None = None

    def cost_micro_usd(self, usage: Usage) -> int:
        uncached = usage.prompt_tokens - usage.cached_prompt_tokens
        total = (
            uncached * self.input_micro_usd_per_1m
            + usage.cached_prompt_tokens * self.cached_input_micro_usd_per_1m
            + usage.completion_tokens * self.output_micro_usd_per_1m
        )
        return ceil_div(total, PER_TOKENS)


@dataclass(frozen=True)
class PriceTable:
    version: str
    models: Mapping[str, ModelPrice]
    local_micro_usd_per_hour: int
    local_instance: str = ""
    source: str = ""
    # The index on disk, per GB-month, and where that price is from ([storage] in the file).
    storage_micro_usd_per_gb_month: int = 0
    storage_source: str = ""

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """Read a price file (default: the bundled ``assistant/data/prices.toml``)."""
        if path is None:
            text = resources.files("assistant").joinpath("data/prices.toml").read_text("utf-8")
            where = "bundled prices.toml"
        else:
            try:
                text = Path(path).read_text("utf-8")
            except OSError as exc:
                raise PriceTableError(f"cannot read price table {path}: {exc}") from exc
            where = str(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PriceTableError(f"{where}: not valid TOML: {exc}") from exc
        return cls.from_dict(data, where)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "price table") -> PriceTable:
        version = data.get("version")
        if not version:
            raise PriceTableError(f"{where}: missing top-level `version`")
        local = data.get("local") or {}
        if "usd_per_hour" not in local:
            raise PriceTableError(f"{where}: missing [local] usd_per_hour")
        storage = data.get("storage") or {}
        missing_storage = [f for f in ("usd_per_gb_month", "source") if f not in storage]
        if missing_storage:
            raise PriceTableError(
                f"{where}: missing [storage] {', '.join(missing_storage)} (the index on disk is priced too, "
                "never a silent $0)"
            )
        raw_models: Mapping[str, Any] = data.get("models") or {}
        if not raw_models:
            raise PriceTableError(f"{where}: no [models.*] entries")
        models: dict[str, ModelPrice] = {}
        for name, entry in raw_models.items():
            source_entry = entry
            if "priced_as" in entry:
                source_entry = raw_models.get(entry["priced_as"])
                if source_entry is None or "priced_as" in source_entry:
                    raise PriceTableError(
                        f"{where}: {name}.priced_as must name a model with its own prices, "
                        f"got {entry['priced_as']!r}"
                    )
            missing = [f for f in PRICE_FIELDS if f not in source_entry] + [
                f for f in ("effective", "source") if f not in entry
            ]
            if missing:
                raise PriceTableError(f"{where}: model {name!r} is missing {', '.join(missing)}")
            effective = entry["effective"]
            if not isinstance(effective, date):
                raise PriceTableError(f"{where}: {name}.effective must be a TOML date (YYYY-MM-DD)")
            micro = {f: usd_to_micro(source_entry[f], f"{name}.{f}") for f in PRICE_FIELDS}
            prior, prior_source = _paid_helps_prior(entry, f"{where}: {name}")
            models[name] = ModelPrice(
                model=name,
                input_micro_usd_per_1m=micro["input"],
                cached_input_micro_usd_per_1m=micro["cached_input"],
                output_micro_usd_per_1m=micro["output"],
                effective=effective,
                source=str(entry["source"]),
                aliases=tuple(entry.get("aliases", ())),
                priced_as=entry.get("priced_as"),
                paid_helps_prior=prior,
                paid_helps_prior_source=prior_source,
            )
        lookup: dict[str, ModelPrice] = {}
        for price in models.values():
            for name in (price.model, *price.aliases):
                if name in lookup and lookup[name] is not price:
                    raise PriceTableError(f"{where}: model name {name!r} appears twice")
                lookup[name] = price
        return cls(
            version=str(version),
            models=lookup,
            local_micro_usd_per_hour=usd_to_micro(local["usd_per_hour"], "local.usd_per_hour"),
            local_instance=str(local.get("instance", "")),
            source=where,
            storage_micro_usd_per_gb_month=usd_to_micro(
                storage["usd_per_gb_month"], "storage.usd_per_gb_month"
            ),
            storage_source=str(storage["source"]),
        )

    def price(self, model: str) -> ModelPrice:
        try:
            return self.models[model]
        except KeyError:
            known = ", ".join(sorted({p.model for p in self.models.values()}))
            raise UnknownModelPrice(
                f"no price for model {model!r} in {self.source} (version {self.version}); "
                f"add it there (known: {known})"
            ) from None

    def require(self, *models: str) -> None:
        """Fail at start-up for any model without a price."""
        for model in models:
            self.price(model)

    def canonical(self, model: str) -> str:
        """The table's name for a model or alias; unknown names come back unchanged."""
        price = self.models.get(model)
        return price.model if price else model

    def cost_micro_usd(self, model: str, usage: Usage) -> int:
        return self.price(model).cost_micro_usd(usage)

    def worst_case_micro_usd(self, model: str, prompt_tokens: int, max_completion_tokens: int) -> int:
        """Full input price (no cache discount) for every prompt token plus every allowed output token."""
        return self.cost_micro_usd(model, Usage(prompt_tokens, max_completion_tokens))

    def local_cost_micro_usd(self, worker_seconds: float, micro_usd_per_hour: int | None = None) -> int:
        if not math.isfinite(worker_seconds) or worker_seconds < 0:
            raise ValueError(f"worker_seconds must be a finite non-negative number, got {worker_seconds!r}")
        per_hour = self.local_micro_usd_per_hour if micro_usd_per_hour is None else micro_usd_per_hour
        return math.ceil(Decimal(str(worker_seconds)) * per_hour / 3600)

    def storage_day_micro_usd(self, size_bytes: int, days_in_month: int) -> int:
        """One day of ``size_bytes`` on disk: bytes x $/GB-month / days in that month, rounded up once."""
        if size_bytes < 0 or not 28 <= days_in_month <= 31:
            raise ValueError(f"need bytes >= 0 and a month of 28-31 days, got {size_bytes}, {days_in_month}")
        return ceil_div(size_bytes * self.storage_micro_usd_per_gb_month, GB * days_in_month)


def _paid_helps_prior(entry: Mapping[str, Any], where: str) -> tuple[float | None, str | None]:
    """A model's stated P(paid helps) and its source: both or neither, the rate in [0, 1]."""
    prior, source = entry.get("paid_helps_prior"), entry.get("paid_helps_prior_source")
    if prior is None:
        if source is not None:
            raise PriceTableError(f"{where}: paid_helps_prior_source without paid_helps_prior")
        return None, None
    if isinstance(prior, bool) or not isinstance(prior, (int, float)) or not 0.0 <= prior <= 1.0:
        raise PriceTableError(f"{where}.paid_helps_prior must be a number in [0, 1], got {prior!r}")
    if not source:
        raise PriceTableError(f"{where}: paid_helps_prior needs paid_helps_prior_source (where it is from)")
    return float(prior), str(source)
