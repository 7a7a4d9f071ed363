"""When do we serve, abstain or escalate? The one place that answers it, for the service and for eval.

Two pure functions over plain values, so the cascade and ``eval.configs.derive`` cannot drift apart:
:func:`route` before generation (nothing relevant retrieved: do not spend local compute) and :func:`decide`
after it (the evaluator's :class:`Judgement` of the local answer against the :class:`Policy`).

:func:`decide` picks the action with the least expected loss, in dollars (FrugalGPT and AutoMix frame the
cascade the same way). With W the stated price of a wrong answer, A the price of abstaining on a question
the sources do answer, c the paid call's expected cost, and the evaluator's three probabilities (the
question is answerable, a; the local answer is right, p; the paid answer is right where the local one is
wrong, q):

- serve locally: (1 − p)·W;
- abstain: a·A;
- escalate: c + (1 − p)(1 − q)·W (a paid call is assumed not to break a right local answer).

When the local answer is itself an abstention, serving it is abstaining (a·A); escalating replaces the
abstention with the paid answer, which can break a right one: c + (1 − q)·W, the paid answer taken to be
right with probability q whichever way the abstention was.

Paying is chosen only when it is expected to buy a right answer worth more than it costs. Near a user's
budget limit c is divided by the share of budget left, so the cascade escalates less.
An explicit ``threshold`` (a request's, or an eval config's) replaces this with the plain rule "escalate
when P(local correct) < threshold".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from assistant.answering.judge.evaluator import Judgement
    from assistant.settings import CascadeSettings

Action = Literal["local", "escalate", "abstain"]
Fallback = Literal["abstain", "escalate"]


@dataclass(frozen=True)
class Policy:
    """The routing rules in force: the operator's settings, not anything learnt from data."""

    escalate_below: float  # the threshold rule's P(correct) bar, used when wrong_answer_usd is None
    retrieval_floor: float  # top relevance below which retrieval found nothing
    on_empty_retrieval: Fallback
    on_local_abstain: Fallback  # the threshold rule's answer to a local abstention
    wrong_answer_usd: float | None = None  # W: None decides by the threshold rule instead of expected loss
    abstain_usd: float = 0.0  # A: the price of abstaining on a question the sources answer
    low_confidence_below: float = 0.5  # a local answer served below this P(correct) is marked low-confidence
    budget_pressure: bool = True  # divide the paid call's cost by the share of the user's budget left
    expected_paid_completion_tokens: int = 32  # the paid answer's expected length, for its expected cost
    never_serve_below: float = 0.0  # a local answer below this P(correct) is not served (abstain/escalate)
    retry_local: bool = False  # a degenerate answer, or an abstention on strong evidence, is asked again
    retry_min_answerable: float = 0.5  # ...an abstention only at this P(answerable) or above
    retry_min_question_match: float = 0.5  # ...and when a passage sentence matches the question this well

    @classmethod
    def from_settings(cls, cascade: CascadeSettings) -> Policy:
        return cls(
            escalate_below=cascade.escalate_below,
            retrieval_floor=cascade.retrieval_floor,
            on_empty_retrieval=cascade.on_empty_retrieval,
            on_local_abstain=cascade.on_local_abstain,
            wrong_answer_usd=cascade.wrong_answer_usd,
            abstain_usd=cascade.abstain_usd,
            low_confidence_below=cascade.low_confidence_below,
            budget_pressure=cascade.budget_pressure,
            never_serve_below=cascade.never_serve_below,
            retry_local=cascade.retry_local,
            retry_min_answerable=cascade.retry_min_answerable,
            retry_min_question_match=cascade.retry_min_question_match,
        )

    @property
    def rule(self) -> str:
        """The decision rule in force, in words (for reports and ``--explain``)."""
        if self.wrong_answer_usd is None:
            return f"threshold rule: escalate below P(correct) {self.escalate_below:.2f}"
        return (
            f"least expected loss: a wrong answer costs ${self.wrong_answer_usd:g}, an unneeded abstention "
            f"${self.abstain_usd:g}"
        )


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str  # starts with a stable code: confident, low_confidence, unanswerable, local_abstained, ...
    judgement: Judgement | None = None  # what was decided on, when the local answer was judged
    features: dict[str, float] = field(default_factory=dict)  # what the answer reports
    expected_loss_usd: dict[str, float] = field(default_factory=dict)  # per action, by the utility rule
    expected_cost_usd: float = 0.0  # what the chosen action is expected to spend: the paid call, if any
    low_confidence: bool = False  # served locally below the policy's low_confidence_below

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
    paid_cost_usd: float = 0.0,
    budget_share_left: float | None = None,
    wrong_answer_usd: float | None = None,
) -> Decision:
    """The decision after generation: by expected loss (the module's docstring) when the policy, or
    ``wrong_answer_usd``, states the price of a wrong answer and no ``threshold`` is given; by the
    threshold rule otherwise.

    ``paid_cost_usd`` is the paid call's expected cost, ``budget_share_left`` the share of the user's
    budget not yet committed (None: no budget). ``local_only`` (mode=local) serves the local answer
    whatever the rules say, and the reason says what they would have done.
    """
    price = policy.wrong_answer_usd if wrong_answer_usd is None else wrong_answer_usd
    if threshold is None and price is not None:
        cost = paid_cost_usd
        if policy.budget_pressure and budget_share_left is not None:
            cost = math.inf if budget_share_left <= 0 else cost / min(1.0, budget_share_left)
        decision = _least_loss(judgement, policy, price, cost, paid_cost_usd)
        if local_only:
            return replace(
                decision, action="local", reason=f"mode=local; {decision.reason}", expected_cost_usd=0.0
            )
        return decision
    return _threshold_rule(judgement, policy, threshold, abstain_below, local_only)


def _least_loss(
    judgement: Judgement, policy: Policy, wrong_usd: float, cost: float, paid_cost_usd: float
) -> Decision:
    p = judgement.p_correct
    answerable = 1.0 if judgement.p_answerable is None else judgement.p_answerable
    # Without a model of the paid tier, assume it is right exactly when the question is answerable.
    helps = answerable if judgement.p_paid_helps is None else judgement.p_paid_helps
    # The paid answer replaces the local one: it keeps a right answer, but can break a right abstention.
    still_wrong = (1.0 - helps) if judgement.local_abstained else (1.0 - p) * (1.0 - helps)
    # Abstaining locally is the "abstain" action; an answer rated almost surely wrong is never served.
    unservable = judgement.local_abstained or p < policy.never_serve_below
    losses = {
        "local": math.inf if unservable else (1.0 - p) * wrong_usd,
        "abstain": answerable * policy.abstain_usd,
        "escalate": cost + still_wrong * wrong_usd,
    }
    action: Action = min(("local", "abstain", "escalate"), key=lambda a: losses[a])  # ties: cheapest first
    summary = f"p={p:.2f} answerable={answerable:.2f} paid_helps={helps:.2f}; expected loss $ " + " ".join(
        f"{a}={losses[a]:.5f}" for a in ("local", "abstain", "escalate") if math.isfinite(losses[a])
    )
    low = action == "local" and p < policy.low_confidence_below
    if action == "local":
        code = "low_confidence" if low else "confident"
    elif action == "abstain":
        code = "local_abstained" if judgement.local_abstained else "unanswerable"
    else:
        code = "paid_helps"
    return Decision(
        action,
        f"{code} {summary}",
        judgement,
        dict(judgement.features),
        expected_loss_usd={a: round(v, 8) for a, v in losses.items() if math.isfinite(v)},
        expected_cost_usd=paid_cost_usd if action == "escalate" else 0.0,
        low_confidence=low,
    )


RetryReason = Literal["degenerate", "abstained_on_evidence"]


def retry_reason(judgement: Judgement, decision: Decision, policy: Policy) -> RetryReason | None:
    """Whether a second local answer is worth asking for, and why; None when not.

    Two failures of a small model's first answer are worth a second, cheap local try: an answer that only
    echoes the question or names a title ("degenerate": wrong whatever its logprobs say), and an abstention
    where the evidence says the sources answer (P(answerable) and the best question-sentence match both
    high). By expected loss: only when the decision taken without it still expects to lose something; a
    second local answer costs a fraction of a paid call.
    """
    if not policy.retry_local:
        return None
    if decision.expected_loss_usd and min(decision.expected_loss_usd.values()) <= 0.0:
        return None
    if judgement.features.get("degenerate"):
        return "degenerate"
    if (
        judgement.local_abstained
        and (judgement.p_answerable or 0.0) >= policy.retry_min_answerable
        and judgement.features.get("question_sentence_cos", 0.0) >= policy.retry_min_question_match
    ):
        return "abstained_on_evidence"
    return None


def better(first: Decision, second: Decision) -> bool:
    """Whether ``second`` (a retried answer's decision) is better than ``first``: a lower least expected
    loss by the expected-loss rule, else (threshold rule) a higher P(correct) with a served answer."""
    if first.expected_loss_usd and second.expected_loss_usd:
        return min(second.expected_loss_usd.values()) < min(first.expected_loss_usd.values())
    p1, p2 = first.confidence or 0.0, second.confidence or 0.0
    return second.action != "abstain" and p2 > p1


def _threshold_rule(
    judgement: Judgement,
    policy: Policy,
    threshold: float | None,
    abstain_below: float | None,
    local_only: bool,
) -> Decision:
    """First rule that applies: the answerable gate abstains; a local abstention follows
    ``policy.on_local_abstain``; P(correct) below the threshold escalates; else serve locally.

    ``threshold`` and ``abstain_below`` override the policy's and the calibration's values.
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
