"""When do we serve, abstain or escalate? The one place that answers it, for the service and for eval.

Two pure functions over plain values, so the cascade and ``eval.runs.derive`` cannot drift apart:
:func:`route` before generation (nothing relevant retrieved: do not spend local compute) and :func:`decide`
after it (the evaluator's :class:`Judgement` of the local answer against the :class:`Policy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from assistant.settings import CascadeSettings

Action = Literal["local", "escalate", "abstain"]
Fallback = Literal["abstain", "escalate"]


@dataclass(frozen=True)
class Policy:
    """The routing rules in force: the operator's settings, not anything learnt from data."""

    escalate_below: float  # P(correct) below which the local answer is not served
    retrieval_floor: float  # top relevance below which retrieval found nothing
    on_empty_retrieval: Fallback
    on_local_abstain: Fallback

    @classmethod
    def from_settings(cls, cascade: CascadeSettings) -> Policy:
        return cls(
            escalate_below=cascade.escalate_below,
            retrieval_floor=cascade.retrieval_floor,
            on_empty_retrieval=cascade.on_empty_retrieval,
            on_local_abstain=cascade.on_local_abstain,
        )


@dataclass(frozen=True)
class Judgement:
    """What the evaluator concluded about one local answer; :func:`decide` turns it into an action."""

    p_correct: float
    p_answerable: float | None = None  # None when the calibration has no answerable model
    abstain_below: float = 0.0  # the calibration's gate on p_answerable (0: no gate)
    features: dict[str, float] = field(default_factory=dict)
    local_abstained: bool = False


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str  # starts with a stable code: confident, low_confidence, unanswerable, local_abstained, ...
    judgement: Judgement | None = None  # what was decided on, when the local answer was judged
    features: dict[str, float] = field(default_factory=dict)  # what the answer reports

    @property
    def confidence(self) -> float | None:
        """P(the local answer is correct), when it was judged."""
        return None if self.judgement is None else self.judgement.p_correct

    @property
    def answerable(self) -> float | None:
        """P(the sources answer the question), when the calibration has that model."""
        return None if self.judgement is None else self.judgement.p_answerable


def route(
    retrieval_top: float, has_passages: bool, policy: Policy, *, local_only: bool = False
) -> Decision | None:
    """The decision before generation, or None to generate the local answer.

    Retrieval below the floor follows ``policy.on_empty_retrieval``, without spending local compute;
    ``local_only`` (mode=local) never pays, so it abstains instead.
    """
    if has_passages and retrieval_top >= policy.retrieval_floor:
        return None
    detail = f"top={retrieval_top:.2f}<{policy.retrieval_floor:.2f}" if has_passages else "no passages"
    reason = f"retrieval_empty {detail}"
    if local_only:
        return Decision("abstain", f"mode=local; {reason}")
    return Decision(policy.on_empty_retrieval, reason)


def decide(
    judgement: Judgement,
    policy: Policy,
    *,
    threshold: float | None = None,
    abstain_below: float | None = None,
    local_only: bool = False,
) -> Decision:
    """The decision after generation, first rule that applies: the answerable gate abstains; a local
    abstention follows ``policy.on_local_abstain``; P(correct) below the threshold escalates; else serve
    locally.

    ``threshold`` and ``abstain_below`` override the policy's and the calibration's values (a request's
    own threshold, an eval config). ``local_only`` (mode=local) serves the local answer whatever the rules
    say, and the reason says what they would have done.
    """
    threshold = policy.escalate_below if threshold is None else threshold
    gate = judgement.abstain_below if abstain_below is None else abstain_below
    p, answerable = judgement.p_correct, judgement.p_answerable
    action: Action
    if answerable is not None and answerable < gate:
        action, reason = "abstain", f"unanswerable p={answerable:.2f}<{gate:.2f}"
    elif judgement.local_abstained:
        action, reason = policy.on_local_abstain, "local_abstained"
    elif p < threshold:
        action, reason = "escalate", f"low_confidence p={p:.2f}<{threshold:.2f}"
    else:
        action, reason = "local", f"confident p={p:.2f}>={threshold:.2f}"
    if local_only:
        action, reason = "local", f"mode=local; {reason}"
    return Decision(action, reason, judgement, dict(judgement.features))
