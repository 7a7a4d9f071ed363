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
BATCH_FIELDS = ("batch_input", "batch_output")
# A batch call is priced, reserved and reported under its model's name with this suffix ("gpt-4o:batch"):
# the ledger needs no column of its own, and `penny usage --by model` shows batch spend apart.
BATCH_SUFFIX = ":batch"
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


def format_signed_usd(micro_usd: int) -> str:
    """A saving or a difference: -$0.0012 when negative, else as ``format_usd``."""
    return ("-" if micro_usd < 0 else "") + format_usd(abs(micro_usd))


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
    # The Batch API's prices (None: the table states none, so this model cannot be batched).
    batch_input_micro_usd_per_1m: int | None = None
    batch_output_micro_usd_per_1m: int | None = None
    batch_source: str | None = None

    def batch(self) -> ModelPrice | None:
        """This model at batch prices, named ``<model>:batch``; None when the table states no batch price.
        Cached prompt tokens are priced as batch input: no discount is assumed on top of the batch one,
        so a batch bill is never under-counted."""
        if self.batch_input_micro_usd_per_1m is None or self.batch_output_micro_usd_per_1m is None:
            return None
        return ModelPrice(
            model=f"{self.model}{BATCH_SUFFIX}",
            input_micro_usd_per_1m=self.batch_input_micro_usd_per_1m,
            cached_input_micro_usd_per_1m=self.batch_input_micro_usd_per_1m,
            output_micro_usd_per_1m=self.batch_output_micro_usd_per_1m,
            effective=self.effective,
            source=self.batch_source or self.source,
            priced_as=self.priced_as,
        )

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
    # Spot capacity for workers above the on-demand floor, with where the number is from; None: not stated.
    local_spot_micro_usd_per_hour: int | None = None
    local_spot_source: str = ""
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
            batch = _batch_prices(source_entry, f"{where}: {name}")
            if "priced_as" in entry and batch[2] is not None:
                batch = (batch[0], batch[1], f"priced as {entry['priced_as']}: {batch[2]}, not a real charge")
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
                batch_input_micro_usd_per_1m=batch[0],
                batch_output_micro_usd_per_1m=batch[1],
                batch_source=batch[2],
            )
        lookup: dict[str, ModelPrice] = {}
        for price in models.values():
            for name in (price.model, *price.aliases):
                if name in lookup and lookup[name] is not price:
                    raise PriceTableError(f"{where}: model name {name!r} appears twice")
                lookup[name] = price
        spot = None
        if "spot_usd_per_hour" in local:
            if not local.get("spot_source"):
                raise PriceTableError(
                    f"{where}: [local] spot_usd_per_hour needs spot_source (where it is from)"
                )
            spot = usd_to_micro(local["spot_usd_per_hour"], "local.spot_usd_per_hour")
        return cls(
            version=str(version),
            models=lookup,
            local_micro_usd_per_hour=usd_to_micro(local["usd_per_hour"], "local.usd_per_hour"),
            local_instance=str(local.get("instance", "")),
            source=where,
            local_spot_micro_usd_per_hour=spot,
            local_spot_source=str(local.get("spot_source", "")),
            storage_micro_usd_per_gb_month=usd_to_micro(
                storage["usd_per_gb_month"], "storage.usd_per_gb_month"
            ),
            storage_source=str(storage["source"]),
        )

    def price(self, model: str) -> ModelPrice:
        if model.endswith(BATCH_SUFFIX):
            return self._batch_price(model.removesuffix(BATCH_SUFFIX))
        try:
            return self.models[model]
        except KeyError:
            known = ", ".join(sorted({p.model for p in self.models.values()}))
            raise UnknownModelPrice(
                f"no price for model {model!r} in {self.source} (version {self.version}); "
                f"add it there (known: {known})"
            ) from None

    def _batch_price(self, model: str) -> ModelPrice:
        batch = self.price(model).batch()
        if batch is None:
            raise UnknownModelPrice(
                f"no batch price for model {model!r} in {self.source} (version {self.version}); add "
                "batch_input and batch_output there, or run without --batch"
            )
        return batch

    def live_cost_micro_usd(self, model: str, usage: Usage) -> int:
        """What ``usage`` costs at the standard (live) price: a batch call's paid-only cost, so the batch
        discount counts as money saved."""
        return self.cost_micro_usd(model.removesuffix(BATCH_SUFFIX), usage)

    def batch_model(self, model: str) -> str:
        """The name a batch call to ``model`` is priced and recorded under; UnknownModelPrice when the table
        has no batch price for it (before anything is reserved or sent)."""
        return self._batch_price(model).model

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


def _batch_prices(entry: Mapping[str, Any], where: str) -> tuple[int | None, int | None, str | None]:
    """A model's batch input and output prices (micro-USD per 1M tokens) and their source: all or none."""
    present = [f for f in BATCH_FIELDS if f in entry]
    if not present:
        return None, None, None
    if len(present) != len(BATCH_FIELDS):
        raise PriceTableError(f"{where}: batch_input and batch_output go together, got only {present[0]}")
    micro = [usd_to_micro(entry[f], f"{where}.{f}") for f in BATCH_FIELDS]
    return micro[0], micro[1], str(entry.get("batch_source") or entry.get("source", ""))


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
