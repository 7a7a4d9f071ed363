"""Is the local answer good enough to serve, and would paying help? The evaluator's view: features and the
three probabilities (local correct, answerable, paid helps).

The evaluator only observes; what to do about its :class:`Judgement` is :mod:`assistant.answering.decision`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from assistant.answering.judge.features import extract_features
from assistant.calibration import Calibration, Calibrations

if TYPE_CHECKING:
    from assistant.calibration import PaidModel
    from assistant.local.backend import Generation
    from index.embedding import Embedder
    from index.retrieval import Passage


@dataclass(frozen=True)
class Judgement:
    """What the evaluator concluded about one local answer; :func:`decide` turns it into an action."""

    p_correct: float  # P(the local answer is right)
    p_answerable: float | None = None  # None when the calibration has no answerable model
    abstain_below: float = 0.0  # the threshold rule's gate on p_answerable (0: no gate)
    features: dict[str, float] = field(default_factory=dict)
    local_abstained: bool = False
    p_paid_helps: float | None = None  # P(the paid answer is right | the local one is wrong); None: no model
    paid_helps_source: str = ""  # where p_paid_helps comes from: a fit for this paid model, or its prior


class Evaluator:
    """Judges a local answer with the calibration's models over :mod:`~assistant.answering.judge.features`:
    the collection's own calibration when ``penny calibrate`` fitted one, else the default. ``paid`` is
    the running paid model: P(paid helps) is a calibration's fit only when it was fitted on that model's
    answers, else the price table's prior for it (:meth:`Calibration.paid_helps_for`)."""

    def __init__(
        self,
        calibration: Calibration | Calibrations,
        embedder: Embedder | None = None,
        paid: PaidModel | None = None,
    ) -> None:
        self.calibrations = (
            calibration if isinstance(calibration, Calibrations) else Calibrations(calibration)
        )
        self._embedder = embedder
        self.paid = paid

    @property
    def calibration(self) -> Calibration:
        """The default calibration (collections without their own)."""
        return self.calibrations.default

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from index.embedding import get_embedder

            self._embedder = get_embedder()
        return self._embedder

    def features(
        self, question: str, passages: Sequence[Passage], generation: Generation
    ) -> dict[str, float]:
        return extract_features(question, passages, generation, self.embedder)

    def judge(
        self,
        question: str,
        passages: Sequence[Passage],
        generation: Generation,
        collection: str | None = None,
    ) -> Judgement:
        features = self.features(question, passages, generation)
        calibration = self.calibrations.for_collection(collection)
        abstained = bool(features["abstained"])
        # An echo of the question or a bare title is wrong whatever its logprobs say (features.is_degenerate).
        degenerate = bool(features.get("degenerate"))
        paid_helps, source = calibration.paid_helps_for(features, self.paid, local_abstained=abstained)
        return Judgement(
            p_correct=0.0 if degenerate else calibration.probability(features),
            p_answerable=calibration.p_answerable(features),
            abstain_below=calibration.abstain_below,
            features=features,
            local_abstained=abstained,
            p_paid_helps=paid_helps,
            paid_helps_source=source,
        )
