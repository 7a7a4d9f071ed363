"""The calibration: logistic models turning the evaluator's features into the three probabilities the
cascade decides on: P(local answer correct), P(answerable) and P(paid answer correct | local wrong).

Coefficients live in a JSON file (one ships; ``python -m eval calibrate`` refits it with
:func:`assistant.calibration.fitting.fit`). The file carries a ``format_version`` so an older Penny refuses
a file it would misread instead of silently mis-scoring answers. Version 2 added ``paid_helps``; version 3
conditions it on the question being answerable and adds ``paid_helps_unanswerable``
(:func:`paid_helps_mixture`); version 4 adds the ``stamp``, what the file was fitted for
(:mod:`assistant.calibration.stamp`). Older files still load and mean what they meant; one without a stamp
is reported as fitted for unknown models, and its P(paid helps) is used for any paid model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from assistant.answering.judge.features import FEATURES, OPTIONAL_FEATURES
from assistant.calibration.stamp import PaidModel, Stamp
from assistant.errors import PennyError

# 4: + stamp; 3: paid_helps given answerable, + paid_helps_unanswerable; 2: paid_helps; 1: neither
FORMAT_VERSION = 4


class CalibrationError(PennyError, ValueError):
    """A calibration that cannot be loaded or refitted; the message names the fix."""


class _NewerFormat(CalibrationError):
    """Written by a newer Penny: regenerating it here is not the fix, so it gets its own message."""


def default_calibration_path() -> Path:
    return Path(str(resources.files("assistant") / "data" / "calibration.json"))


@dataclass
class Calibration:
    """Logistic model on standardised features: P = sigmoid(intercept + Σ coef·(x − mean)/scale).

    The top-level model gives P(local answer correct). Two optional models, each fitted on its own labels:
    ``answerable``, P(the sources answer the question at all), since small models rarely abstain on their
    own; and ``paid_helps``, the value of escalating. From format 3 on, ``paid_helps`` is P(the paid answer
    is right | the local one is wrong, the question is answerable) and ``paid_helps_unanswerable`` the same
    rate on unanswerable questions (the paid tier must abstain to be right there): the two differ widely
    and P(answerable) says which applies (:func:`paid_helps_mixture`). In older files ``paid_helps`` is
    P(the paid answer is right | the local one is wrong) on all questions, used as it is.
    ``abstain_below`` is the threshold rule's gate on P(answerable). ``stamp`` (the top-level model's
    only) says what the file was fitted for.
    """

    features: list[str]
    coef: list[float]
    intercept: float
    means: list[float]
    scales: list[float]
    meta: dict[str, Any] = field(default_factory=dict)
    answerable: Calibration | None = None
    abstain_below: float = 0.0
    paid_helps: Calibration | None = None
    paid_helps_unanswerable: float | None = None
    stamp: Stamp | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.features if name not in FEATURES]
        if unknown:
            raise CalibrationError(f"unknown features {unknown}; known: {', '.join(FEATURES)}")
        n = len(self.features)
        if not n or not (len(self.coef) == len(self.means) == len(self.scales) == n):
            raise CalibrationError("features, coef, means and scales must be non-empty and the same length")
        if any(not scale > 0 for scale in self.scales):
            raise CalibrationError("every scale must be > 0")
        if not 0.0 <= self.abstain_below <= 1.0:
            raise CalibrationError(f"abstain_below must be in [0, 1], got {self.abstain_below}")
        rate = self.paid_helps_unanswerable
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise CalibrationError(f"paid_helps_unanswerable must be in [0, 1], got {rate}")

    def logit(self, features: Mapping[str, float]) -> float:
        """A feature the row lacks (``OPTIONAL_FEATURES``: the backend could not say) is read at its mean."""
        total = self.intercept
        for name, coef, mean, scale in zip(self.features, self.coef, self.means, self.scales, strict=True):
            value = feature_value(features, name)
            if not math.isnan(value):
                total += coef * (value - mean) / scale
        return total

    def probability(self, features: Mapping[str, float]) -> float:
        z = self.logit(features)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def p_answerable(self, features: Mapping[str, float]) -> float | None:
        """P(the question is answerable from the sources), or None without an answerable model."""
        return None if self.answerable is None else self.answerable.probability(features)

    def p_paid_helps(self, features: Mapping[str, float], *, local_abstained: bool = False) -> float | None:
        """P(the paid answer is right | the local one is wrong), or None without that model.

        ``local_abstained``: the local answer was an abstention, which is wrong only if the question is
        answerable (so P(answerable | local wrong) is P(answerable) itself).
        """
        if self.paid_helps is None:
            return None
        helps = self.paid_helps.probability(features)
        if self.paid_helps_unanswerable is None or self.answerable is None:
            return helps  # format 2: already P(paid right | local wrong) on all questions
        return paid_helps_mixture(
            helps,
            self.paid_helps_unanswerable,
            p_answerable=self.answerable.probability(features),
            p_correct=self.probability(features),
            local_abstained=local_abstained,
        )

    def features_read(self) -> list[str]:
        """Every feature one of its models reads, in the order they first appear (the stamp's set)."""
        names = list(self.features)
        for model in (self.answerable, self.paid_helps):
            if model is not None:
                names += [n for n in model.features if n not in names]
        return names

    def paid_helps_for(
        self, features: Mapping[str, float], paid: PaidModel | None, *, local_abstained: bool = False
    ) -> tuple[float | None, str]:
        """P(the paid answer is right | the local one is wrong) for the running ``paid`` model, and where
        the number comes from.

        The fitted model when it was fitted on this model's answers (or ``paid`` is unknown, or the file
        has no stamp to say). Otherwise the price table's prior for ``paid``, as it is for answerable and
        unanswerable questions alike: the fitted rate on unanswerable ones (``paid_helps_unanswerable``)
        is the other model's, and no published number for a model class separates its abstentions. With
        neither, the other model's fit, said so; None without any (the decision then reads P(answerable)).
        """
        fitted_for = None if self.stamp is None else self.stamp.paid_model
        if self.paid_helps is not None and (paid is None or fitted_for is None or paid.named(fitted_for)):
            value = self.p_paid_helps(features, local_abstained=local_abstained)
            return value, f"fitted for {fitted_for}" if fitted_for else "fitted (a file without a stamp)"
        if paid is not None and paid.prior is not None:
            return paid.prior, f"prior for {paid.name}: {paid.prior_source}"
        if self.paid_helps is not None:
            value = self.p_paid_helps(features, local_abstained=local_abstained)
            return value, f"fitted for {fitted_for}, not {paid.name if paid else 'this model'} (no prior)"
        return None, "not modelled: P(answerable)"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        version = int(data.get("format_version", 1))
        if version > FORMAT_VERSION:
            raise _NewerFormat(
                f"calibration format_version {version} is newer than this Penny reads ({FORMAT_VERSION}); "
                "upgrade Penny or regenerate the file with `python -m eval calibrate`"
            )
        answerable, paid_helps = data.get("answerable"), data.get("paid_helps")
        return cls(
            features=list(data["features"]),
            coef=[float(c) for c in data["coef"]],
            intercept=float(data["intercept"]),
            means=[float(m) for m in data["means"]],
            scales=[float(s) for s in data["scales"]],
            meta=dict(data.get("meta") or {}),
            answerable=cls.from_dict(answerable) if answerable else None,
            abstain_below=float(data.get("abstain_below", 0.0)),
            paid_helps=cls.from_dict(paid_helps) if paid_helps else None,
            paid_helps_unanswerable=_optional_float(data.get("paid_helps_unanswerable")),
            stamp=Stamp.from_dict(data["stamp"]) if data.get("stamp") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        data = {"format_version": FORMAT_VERSION, **asdict(self)}
        data["stamp"] = None if self.stamp is None else self.stamp.to_dict()
        for name in ("answerable", "paid_helps"):
            if data[name] is not None:
                data[name].pop("stamp")  # one stamp, the file's
        return data

    @classmethod
    def load(cls, path: Path | None = None) -> Calibration:
        path = path or default_calibration_path()
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError as exc:
            raise CalibrationError(
                f"calibration file {path} not found; fix cascade.calibration_file or run "
                "`python -m eval calibrate`"
            ) from exc
        except _NewerFormat as exc:
            raise CalibrationError(f"calibration file {path}: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise CalibrationError(
                f"calibration file {path} is invalid ({exc}); regenerate it with `python -m eval calibrate`"
            ) from exc

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)  # atomic: a reader never sees half a file


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def paid_helps_mixture(
    answerable_helps: float,
    unanswerable_helps: float,
    *,
    p_answerable: float,
    p_correct: float,
    local_abstained: bool,
) -> float:
    """P(the paid answer is right | the local one is wrong), by the law of total probability over whether
    the question is answerable.

    A local answer that is not an abstention is right only on an answerable question, so given that it is
    wrong, the question is answerable with probability (a − p)/(1 − p) (clipped: the two models are fitted
    apart and need not agree). A local abstention is wrong exactly when the question is answerable: a.
    """
    if local_abstained or p_correct >= 1.0 - 1e-9:
        weight = p_answerable
    else:
        weight = (p_answerable - p_correct) / (1.0 - p_correct)
    weight = min(1.0, max(0.0, weight))
    return weight * answerable_helps + (1.0 - weight) * unanswerable_helps


def feature_value(row: Mapping[str, float], name: str) -> float:
    """``row``'s value of ``name``; NaN for an optional feature the row lacks.

    A missing required one is a ``KeyError``: an older Penny built the row (``--refresh-features``)."""
    return float(row.get(name, math.nan)) if name in OPTIONAL_FEATURES else float(row[name])
