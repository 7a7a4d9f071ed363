"""Shadow sampling: a small share of locally served answers is also answered by the paid tier, in the
background, so the evaluator keeps being checked on live traffic.

The user's answer is already on its way when a check starts: a check never delays it, changes it, or
appears on the user's bill. Checks are charged to a system account (``penny-shadow``) whose daily budget
is ``cascade.shadow_budget_usd``; when it is spent, checks stop until the next day. The paid answer and
the agreement label go to the ledger (``shadow_labels``), where ``penny calibrate --from-ledger`` refits
from them, and a sliding window of labels gives the live precision estimate that ``/metrics`` exports.
"""

from __future__ import annotations

import collections
import logging
import random
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from assistant.answering.charged import charged_chat
from assistant.answering.prompt.grounded import is_abstention
from assistant.answering.text import normalize

if TYPE_CHECKING:
    from assistant.answering.answer import CascadeAnswer
    from assistant.ledger import Ledger, Principal
    from assistant.paid import PaidClient

log = logging.getLogger("penny.shadow")

SHADOW_ACCOUNT = "penny-shadow"
AGREEMENT_F1 = 0.5  # the same bar as "correct" in eval: SQuAD token F1 ≥ 0.5
MAX_PENDING = 4  # checks waiting for the paid tier; beyond that a sample is dropped, never queued forever
MIN_LABELS_FOR_WARNING = 20
_CITATIONS = re.compile(r"\s*\[\d{1,2}(?:\s*,\s*\d{1,2})*\]")


def agreement_f1(local: str, paid: str) -> float:
    """SQuAD-style token F1 between two answers (citations dropped); both abstaining is agreement."""
    local_abstained, paid_abstained = is_abstention(local), is_abstention(paid)
    if local_abstained or paid_abstained:
        return float(local_abstained and paid_abstained)
    a = normalize(_CITATIONS.sub("", local)).split()
    b = normalize(_CITATIONS.sub("", paid)).split()
    if not a or not b:
        return float(a == b)
    common = sum((collections.Counter(a) & collections.Counter(b)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


class ShadowSampler:
    """Samples served local answers for a paid check, runs the checks on one background thread, and keeps
    the live estimate of local precision over the last ``window`` labels."""

    def __init__(
        self,
        paid: PaidClient,
        ledger: Ledger,
        *,
        rate: float,
        budget_usd: float,
        min_precision: float = 0.6,
        window: int = 200,
        draw: Callable[[], float] = random.random,
    ) -> None:
        from assistant.ledger import usd_to_micro

        self.paid = paid
        self.ledger = ledger
        self.rate = rate
        self.min_precision = min_precision
        self.draw = draw
        self._budget_micro_usd = usd_to_micro(budget_usd, "cascade.shadow_budget_usd")
        self._principal: Principal | None = None
        self._labels: collections.deque[bool] = collections.deque(maxlen=window)
        self._lock = threading.Lock()
        self._pending = 0
        self._warned = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="penny-shadow")
        self._seeded = False

    @property
    def principal(self) -> Principal:
        """The shadow account, with its daily budget set from settings on first use."""
        if self._principal is None:
            self._principal = self.ledger.system_account(SHADOW_ACCOUNT)
            self.ledger.set_budget(SHADOW_ACCOUNT, self._budget_micro_usd, "day")
        return self._principal

    # -- live estimates ---------------------------------------------------------------------------

    def precision(self) -> float | None:
        """Share of recent shadow-checked local answers the paid tier agreed with (None before any)."""
        self._seed()
        with self._lock:
            return sum(self._labels) / len(self._labels) if self._labels else None

    def label_count(self) -> int:
        self._seed()
        with self._lock:
            return len(self._labels)

    def _seed(self) -> None:
        """Start the window from the ledger's latest labels, so a restart does not forget them. Once, and
        under the lock: a check finishing meanwhile must not be counted from the ledger and again."""
        with self._lock:
            if self._seeded:
                return
            self._seeded = True
            try:
                recent = self.ledger.shadow_labels(limit=self._labels.maxlen)
            except Exception:  # a ledger hiccup must not break /metrics: start empty
                log.warning("could not read recent shadow labels", exc_info=True)
                return
            self._labels.extend(label.agreed for label in reversed(recent))

    # -- sampling ---------------------------------------------------------------------------------

    def maybe_check(
        self,
        *,
        request_id: str,
        collection: str | None,
        messages: Sequence[dict[str, str]],
        answer: CascadeAnswer,
    ) -> Future[None] | None:
        """Queue a paid check of a locally served ``answer`` with probability ``rate``; returns at once.

        Returns the check's future (tests wait on it), or None when not sampled or too many are pending.
        """
        if self.rate <= 0 or answer.tier != "local" or self.draw() >= self.rate:
            return None
        with self._lock:
            if self._pending >= MAX_PENDING:
                log.info("shadow check of %s dropped: %d already pending", request_id, self._pending)
                return None
            self._pending += 1
        features = dict(answer.features)
        return self._executor.submit(
            self._check, request_id, collection, list(messages), answer.answer, answer.confidence, features
        )

    def _check(
        self,
        request_id: str,
        collection: str | None,
        messages: list[dict[str, str]],
        local_answer: str,
        confidence: float | None,
        features: dict[str, float],
    ) -> None:
        from assistant.ledger import BudgetExceeded, ShadowLabel
        from assistant.paid import PaidError

        self._seed()  # before this label is stored, so the window does not count it twice
        try:
            result, cost = charged_chat(
                self.paid,
                self.ledger,
                self.principal,
                messages,
                request_id=f"shadow:{request_id}",
                max_tokens=self.paid.max_tokens,
            )
            f1 = agreement_f1(local_answer, result.text)
            label = ShadowLabel(
                request_id=request_id,
                collection=collection,
                local_answer=local_answer,
                paid_answer=result.text,
                paid_model=result.model,
                agreement_f1=f1,
                agreed=f1 >= AGREEMENT_F1,
                paid_abstained=is_abstention(result.text),
                confidence=confidence,
                features=features,
                paid_cost_micro_usd=cost,
            )
            self.ledger.record_shadow_label(label)
        except BudgetExceeded:
            log.info("shadow check of %s skipped: the shadow budget for today is spent", request_id)
            return
        except PaidError as exc:
            log.warning("shadow check of %s failed: %s", request_id, exc.reason)
            return
        except Exception:  # a background check must never take anything else down
            log.exception("shadow check of %s failed", request_id)
            return
        finally:
            with self._lock:
                self._pending -= 1
        with self._lock:
            self._labels.append(label.agreed)
        self._warn_if_low()

    def _warn_if_low(self) -> None:
        precision, n = self.precision(), self.label_count()
        if precision is None or n < MIN_LABELS_FOR_WARNING:
            return
        if precision < self.min_precision and not self._warned:
            self._warned = True  # once per dip, not once per label
            log.warning(
                "estimated precision of local answers is %.2f over the last %d shadow checks, below "
                "cascade.shadow_min_precision %.2f: refit with `penny calibrate --from-ledger`",
                precision,
                n,
                self.min_precision,
            )
        elif precision >= self.min_precision:
            self._warned = False

    def close(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)
