"""What the ledger teaches each of the evaluator's models: shadow checks and people's ratings turned into
labels, one row per answer.

A shadow check (the paid tier re-asked about a locally served answer) labels P(local correct) with
agreement and P(answerable) with the paid tier not abstaining. A rating (👍 ``up``, 👎 ``down``, "should
have said I don't know" ``should_abstain``) says whether the answer shown was right and, sometimes, whether
the documents answer the question at all:

| answer shown                 | up                  | down                | should_abstain              |
|------------------------------|---------------------|---------------------|-----------------------------|
| an answer (local or paid)    | right; answerable   | wrong               | wrong; unanswerable         |
| "I don't know" (any tier)    | right; unanswerable | wrong; answerable   | right; unanswerable (as up) |
| no local answer judged       | nothing: no features to learn from (a cache hit, nothing       |
| (cache hit, nothing found)   | relevant retrieved, or an answer from before migration 8)       |

Each model's label then follows by eval's definitions (``eval/verdicts.py``: the local answer is right when
it answers an answerable question, or abstains on an unanswerable one):
- P(local correct): the rating itself when the local answer was shown; for a local answer not shown (an
  escalation, an abstention), only what answerability implies: on an unanswerable question it was right
  exactly when it abstained, on an answerable one an abstention was wrong.
- P(answerable): the answerability above, when the rating says it.
- P(paid helps) (the paid answer right, given the local one wrong): a rated paid answer whose local answer
  is known wrong by the rules above, split as the calibration splits it, answerable or not. Counted, not
  refitted: the refit keeps that model (see ``refit_from_ledger``).
A rating on an answer that also has a shadow label wins over the shadow's label for each model it labels
(a person read the answer; the shadow only compared it with the paid tier's); the shadow still labels the
models the rating says nothing about. The operator's rating (admin key) wins over the owner's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from assistant.answering.judge.features import FEATURES, OPTIONAL_FEATURES
from assistant.ledger import RATINGS, AnswerFeedback, ShadowLabel

MODELS = ("local_correct", "answerable", "paid_helps", "paid_helps_unanswerable")


def judged(feedback: AnswerFeedback) -> bool:
    """A local answer was generated and judged for the rated answer: its features are what a model learns
    from. Not for a cache hit, an answer routed before any local run (nothing relevant retrieved), or one
    recorded before answers kept their features."""
    return feedback.tier != "cache" and feedback.features is not None and "abstained" in feedback.features


def rating_labels(feedback: AnswerFeedback) -> dict[str, bool]:
    """The labels one rating gives each model (a model it says nothing about is absent)."""
    if not judged(feedback):
        return {}
    assert feedback.features is not None
    local_abstained = feedback.features["abstained"] >= 0.5  # the local answer's, shown or not
    shown_abstention = feedback.tier == "none" if feedback.abstained is None else feedback.abstained
    rating = feedback.rating
    right = rating == "up" or (rating == "should_abstain" and shown_abstention)
    answerable: bool | None
    if rating == "should_abstain":
        answerable = False
    elif shown_abstention:
        answerable = not right  # right to say "I don't know" only when the documents do not say
    else:
        answerable = True if right else None  # a wrong answer does not say whether a right one existed
    labels: dict[str, bool] = {}
    if answerable is not None:
        labels["answerable"] = answerable
    if feedback.tier == "local":
        labels["local_correct"] = right
    elif answerable is not None:
        if not answerable:
            labels["local_correct"] = local_abstained
        elif local_abstained:
            labels["local_correct"] = False
    local_wrong = labels.get("local_correct") is False
    if feedback.tier == "paid" and local_wrong and answerable is not None:
        labels["paid_helps" if answerable else "paid_helps_unanswerable"] = right
    return labels


@dataclass(frozen=True)
class LabelledRow:
    """One answer's features and what the ledger says of it, per model."""

    request_id: str
    features: dict[str, float]
    labels: dict[str, bool]


@dataclass
class LedgerLabels:
    """The ledger's labels, one row per answer, and where they came from."""

    rows: list[LabelledRow]
    shadow: int = 0
    ratings: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RATINGS, 0))
    overruled: int = 0  # answers whose shadow label a person's rating contradicted (the rating counts)
    unjudged: int = 0  # ratings of answers no local answer was judged for (see ``judged``)

    def for_model(
        self, model: str, names: Sequence[str] | None = None
    ) -> tuple[list[dict[str, float]], list[bool]]:
        """(features, labels) of the rows labelling ``model`` whose features hold every one of ``names``
        (``OPTIONAL_FEATURES`` may be missing)."""
        required = [n for n in (names or FEATURES) if n not in OPTIONAL_FEATURES]
        rows = [r for r in self.rows if model in r.labels and all(n in r.features for n in required)]
        return [dict(r.features) for r in rows], [r.labels[model] for r in rows]


def ledger_labels(shadow: Iterable[ShadowLabel], feedback: Iterable[AnswerFeedback]) -> LedgerLabels:
    """Merge shadow labels and ratings into one row per answer (see the module docstring for who wins)."""
    result = LedgerLabels(rows=[])
    rows: dict[str, LabelledRow] = {}
    for label in shadow:
        result.shadow += 1
        rows[label.request_id] = LabelledRow(
            label.request_id,
            dict(label.features),
            {"local_correct": label.agreed, "answerable": not label.paid_abstained},
        )
    chosen: dict[str, AnswerFeedback] = {}
    for item in feedback:
        if item.request_id not in chosen or item.given_by == "admin":
            chosen[item.request_id] = item
    for item in chosen.values():
        result.ratings[item.rating] += 1
        labels = rating_labels(item)
        if not judged(item):
            result.unjudged += 1
        if not labels:
            continue
        earlier = rows.get(item.request_id)
        if earlier is None:
            rows[item.request_id] = LabelledRow(item.request_id, dict(item.features or {}), labels)
            continue
        if any(earlier.labels.get(model, value) != value for model, value in labels.items()):
            result.overruled += 1
        earlier.labels.update(labels)
    result.rows = list(rows.values())
    return result


@dataclass(frozen=True)
class LabelCounts:
    """How many labels a refit had, by source and by model: what ``penny calibrate --from-ledger`` says
    whether it refits or refuses."""

    shadow: int
    ratings: Mapping[str, int]
    synthetic: int
    overruled: int
    unjudged: int
    per_model: Mapping[str, int]

    @classmethod
    def of(cls, labels: LedgerLabels, synthetic: int, per_model: Mapping[str, int]) -> LabelCounts:
        return cls(
            labels.shadow,
            dict(labels.ratings),
            synthetic,
            labels.overruled,
            labels.unjudged,
            per_model,
        )

    def lines(self) -> list[str]:
        r = self.ratings
        lines = [
            f"labels: {self.shadow} shadow, {sum(r.values())} feedback ({r.get('up', 0)} up, "
            f"{r.get('down', 0)} down, {r.get('should_abstain', 0)} should have said I don't know), "
            f"{self.synthetic} synthetic"
        ]
        if self.overruled:
            lines.append(
                f"{self.overruled} shadow label(s) contradicted by a person's rating: the rating counts"
            )
        if self.unjudged:
            lines.append(
                f"{self.unjudged} rating(s) unused: no local answer was judged for them (a cache hit, "
                "nothing relevant retrieved, or answered before answers kept their features)"
            )
        m = self.per_model
        lines.append(
            f"labels per model: P(local correct) {m.get('local_correct', 0)}, P(answerable) "
            f"{m.get('answerable', 0)}, P(paid helps) {m.get('paid_helps', 0)} (kept, not refitted)"
        )
        return lines
