"""What a calibration was fitted for, and what the running Penny does differently.

Coefficients fitted on one local model's answers, in one answer style and prompt, mis-score another's; a
P(paid helps) fitted on one paid model's answers says nothing about another's. A calibration file's
:class:`Stamp` records what it was fitted for: the local model (name and sha256), the paid model, the answer
style and prompt version, the features its models read, the data (which runs, how many questions each) and
the date of that data. :func:`mismatches` compares it with :class:`Running`, the settings in force: the
service logs what differs at start-up and exports it on ``/metrics``, ``penny calibrate --show`` prints it.
:class:`PaidModel` is the running paid model as the evaluator sees it, with the price table's stated prior
for P(paid helps) (:meth:`assistant.calibration.Calibration.paid_helps_for`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assistant.ledger.prices import PriceTable
    from assistant.local.registry import ModelRegistry
    from assistant.settings import Settings

# What a stamp is checked on; "stamp" is a file written before stamps (format < 4).
FIELDS = ("stamp", "local_model", "paid_model", "answer_style", "prompt_version")
DEFAULT = "*"  # the default calibration's label: every collection without its own file


@dataclass(frozen=True)
class LocalModelId:
    name: str  # a registry name, or the path of the user's own GGUF file
    sha256: str | None = None

    def same(self, other: LocalModelId) -> bool:
        """By sha256 when both are known (a renamed file is the same model), else by name."""
        if self.sha256 and other.sha256:
            return self.sha256 == other.sha256
        return self.name == other.name

    def __str__(self) -> str:
        return self.name if not self.sha256 else f"{self.name} (sha256 {self.sha256[:12]}…)"


@dataclass(frozen=True)
class RunCount:
    """One source of labels and how many questions of it the fit read."""

    run: str
    questions: int


@dataclass(frozen=True)
class Stamp:
    """What a calibration was fitted for. None where the data did not say (a run recorded before it did)."""

    local_model: LocalModelId | None
    paid_model: str | None  # whose answers P(paid helps) was fitted on
    answer_style: str | None
    prompt_version: int | None
    features: tuple[str, ...]  # every feature one of its models reads
    data: tuple[RunCount, ...]
    date: str | None  # ISO date of the newest data: a rebuild from the same data writes the same stamp
    source: str = ""  # the command, or the named recipe, that wrote it

    def to_dict(self) -> dict[str, Any]:
        return {
            "local_model": None
            if self.local_model is None
            else {"name": self.local_model.name, "sha256": self.local_model.sha256},
            "paid_model": self.paid_model,
            "answer_style": self.answer_style,
            "prompt_version": self.prompt_version,
            "features": list(self.features),
            "data": [{"run": d.run, "questions": d.questions} for d in self.data],
            "date": self.date,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stamp:
        local = data.get("local_model")
        version = data.get("prompt_version")
        return cls(
            local_model=None if not local else LocalModelId(str(local["name"]), local.get("sha256")),
            paid_model=data.get("paid_model"),
            answer_style=data.get("answer_style"),
            prompt_version=None if version is None else int(version),
            features=tuple(str(f) for f in data.get("features") or ()),
            data=tuple(RunCount(str(d["run"]), int(d["questions"])) for d in data.get("data") or ()),
            date=data.get("date"),
            source=str(data.get("source") or ""),
        )

    def lines(self) -> list[str]:
        """The stamp for people (``penny calibrate --show``)."""

        def known(value: object) -> str:
            return "unknown" if value is None else str(value)

        runs = ", ".join(f"{d.run} ({d.questions} questions)" for d in self.data) or "unknown"
        return [
            f"local model:    {known(self.local_model)}",
            f"paid model:     {known(self.paid_model)}",
            f"answer style:   {known(self.answer_style)}",
            f"prompt version: {known(self.prompt_version)}",
            f"features:       {', '.join(self.features) or 'unknown'}",
            f"data:           {runs}",
            f"date:           {known(self.date)}",
            f"written by:     {self.source or 'unknown'}",
        ]


@dataclass(frozen=True)
class PaidModel:
    """The running paid model as P(paid helps) sees it: its names in the price table, and the prior stated
    there for it (used while no calibration is fitted on its answers)."""

    name: str
    aliases: frozenset[str] = frozenset()
    prior: float | None = None
    prior_source: str | None = None

    def named(self, name: str | None) -> bool:
        return name is not None and (name == self.name or name in self.aliases)

    @classmethod
    def from_prices(cls, model: str, prices: PriceTable) -> PaidModel:
        price = prices.models.get(model)
        if price is None:
            return cls(model)
        aliases = frozenset(price.aliases)
        return cls(price.model, aliases, price.paid_helps_prior, price.paid_helps_prior_source)


@dataclass(frozen=True)
class Running:
    """What this Penny answers with, in the terms of a stamp."""

    local_model: LocalModelId
    paid: PaidModel | None  # None: no paid tier
    answer_style: str
    prompt_version: int


def running(settings: Settings, registry: ModelRegistry, prices: PriceTable) -> Running:
    """The running models and prompt, from ``settings`` (a user's own local GGUF file is hashed once and
    the hash cached: :meth:`~assistant.local.registry.ModelRegistry.sha256`)."""
    from assistant.answering.prompt.grounded import PROMPT_VERSION
    from assistant.local.registry import ModelError

    local = settings.models.local
    try:
        sha256: str | None = registry.sha256(local)
    except ModelError:
        sha256 = None  # loading it fails with the reason; here the name is still comparable
    paid = PaidModel.from_prices(settings.paid.model, prices) if settings.paid.base_url else None
    return Running(LocalModelId(local, sha256), paid, settings.cascade.answer_style, PROMPT_VERSION)


@dataclass(frozen=True)
class Mismatch:
    field: str  # one of FIELDS
    fitted: str
    running: str
    fix: str

    def line(self) -> str:
        return f"{self.field}: fitted for {self.fitted}, running {self.running}; {self.fix}"


def mismatches(stamp: Stamp | None, now: Running, collection: str = DEFAULT) -> list[Mismatch]:
    """What differs between the models, answer style and prompt ``stamp`` was fitted for and ``now``,
    each with what to do. A field the stamp does not know is not reported: there is nothing to compare."""
    refit = (
        "`penny calibrate --collection COLLECTION`"
        if collection == DEFAULT
        else f"`penny calibrate --collection {collection}`"
    )
    if stamp is None:
        return [Mismatch("stamp", "unknown models", "these", f"a file written before stamps; refit: {refit}")]
    found = []
    if stamp.local_model is not None and not stamp.local_model.same(now.local_model):
        found.append(
            Mismatch(
                "local_model",
                str(stamp.local_model),
                str(now.local_model),
                f"its P(local correct) and P(answerable) read another model's answers; refit: {refit}",
            )
        )
    paid = now.paid
    if paid is not None and not paid.named(stamp.paid_model):
        if paid.prior is not None:
            fix = (
                f"P(paid helps) is the price table's prior for {paid.name}, {paid.prior:g} "
                f"({paid.prior_source}), until a calibration is fitted on its answers: {refit}"
            )
        else:
            fix = (
                f"P(paid helps) is still {stamp.paid_model or 'unmodelled'}'s: set paid_helps_prior for "
                f"{paid.name} in the price table, or refit: {refit}"
            )
        found.append(Mismatch("paid_model", str(stamp.paid_model or "no paid model"), paid.name, fix))
    if stamp.answer_style is not None and stamp.answer_style != now.answer_style:
        found.append(
            Mismatch(
                "answer_style",
                stamp.answer_style,
                now.answer_style,
                f'set cascade.answer_style = "{stamp.answer_style}", or refit: {refit}',
            )
        )
    if stamp.prompt_version is not None and stamp.prompt_version != now.prompt_version:
        found.append(
            Mismatch(
                "prompt_version",
                str(stamp.prompt_version),
                str(now.prompt_version),
                f"the local prompt changed since the fit; refit: {refit}",
            )
        )
    return found
