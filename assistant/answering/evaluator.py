"""Is the local answer good enough to serve, and would paying help? The evaluator's view: features and the
three probabilities (local correct, answerable, paid helps).

The evaluator only observes; what to do about its :class:`Judgement` is :mod:`assistant.answering.decision`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from assistant.answering.calibration import Calibration
from assistant.answering.decision import Judgement
from assistant.answering.features import extract_features

if TYPE_CHECKING:
    from assistant.local.backend import Generation
    from index.embedding import Embedder
    from index.retrieval import Passage


class Evaluator:
    """Judges a local answer with the calibration's models over :mod:`~assistant.answering.features`."""

    def __init__(self, calibration: Calibration, embedder: Embedder | None = None) -> None:
        self.calibration = calibration
        self._embedder = embedder

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

    def judge(self, question: str, passages: Sequence[Passage], generation: Generation) -> Judgement:
        features = self.features(question, passages, generation)
        return Judgement(
            p_correct=self.calibration.probability(features),
            p_answerable=self.calibration.p_answerable(features),
            abstain_below=self.calibration.abstain_below,
            features=features,
            local_abstained=bool(features["abstained"]),
            p_paid_helps=self.calibration.p_paid_helps(features),
        )
