"""Delivering alert events to the operator's webhook: at least once, retried with backoff, every attempt
recorded in the ledger.

The schedule lives in the ledger (``next_attempt_at``), not in a sleeping thread: a restart, another API
process or ``penny alerts deliver`` picks up exactly where the last attempt left off, and nothing waits
in memory. Each event is claimed with a lease before its POST, so two processes do not both send it; a
process dying mid-POST means the lease runs out and the event is sent again, which is why receivers
dedupe by ``X-Penny-Event-Id``.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx

from assistant.alerts.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, sign
from assistant.errors import PennyError
from assistant.ledger.base import naive_utc
from assistant.settings import AlertSettings, redact_url

if TYPE_CHECKING:
    from assistant.ledger import AlertDelivery, AlertEvent, Ledger

log = logging.getLogger("penny.alerts")


class AlertConfigError(PennyError):
    """The alert settings cannot work (a webhook URL without a secret)."""


def body_of(event: AlertEvent) -> bytes:
    """The exact bytes that are signed and sent (compact JSON, sorted keys)."""
    return json.dumps(event.payload(), separators=(",", ":"), sort_keys=True).encode()


class Deliverer:
    def __init__(
        self,
        ledger: Ledger,
        settings: AlertSettings,
        *,
        client: httpx.Client | None = None,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """``wall_clock`` stamps signatures; ``jitter`` (0..1) spreads retries. Both injectable for tests;
        the retry schedule itself follows the ledger's clock."""
        if not settings.webhook_url:
            raise AlertConfigError("alerts.webhook_url is not set: there is nowhere to deliver alerts")
        if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
            raise AlertConfigError(
                "alerts.webhook_url is set but alerts.webhook_secret is not: set "
                "PENNY_ALERTS__WEBHOOK_SECRET (receivers verify X-Penny-Signature with it)"
            )
        self.ledger = ledger
        self.settings = settings
        self._url = settings.webhook_url
        self._secret = settings.webhook_secret
        self._client = client or httpx.Client(timeout=settings.timeout_s)
        self._wall_clock = wall_clock
        self._jitter = jitter

    def backoff_s(self, attempt: int) -> float:
        """Wait after failed attempt number ``attempt``: exponential, capped, with jitter (half to all of
        it) so events that failed together do not retry together."""
        delay = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return delay * (0.5 + self._jitter() / 2)

    def deliver_due(self, *, include_scheduled: bool = False) -> list[AlertDelivery]:
        """POST every event due now (``include_scheduled``: also those waiting out a backoff); one
        recorded attempt each."""
        events = self.ledger.claim_alerts(
            limit=self.settings.batch_size,
            lease_s=self.settings.lease_s,
            include_scheduled=include_scheduled,
        )
        return [self._deliver(event) for event in events]

    def _deliver(self, event: AlertEvent) -> AlertDelivery:
        body = body_of(event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "penny-alerts/1",
            EVENT_ID_HEADER: event.id,
            SIGNATURE_HEADER: sign(self._secret.get_secret_value(), body, int(self._wall_clock())),
        }
        status: int | None = None
        error: str | None = None
        try:
            status = self._client.post(self._url, content=body, headers=headers).status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}"
        next_attempt = None
        if error is not None:
            wait = self.backoff_s(event.attempts + 1)
            next_attempt = naive_utc(self.ledger.clock()) + timedelta(seconds=wait)
            log.warning(
                "alert %s to %s failed (attempt %d: %s); next attempt in %.0fs",
                event.id,
                redact_url(self._url),
                event.attempts + 1,
                error,
                wait,
            )
        return self.ledger.record_delivery(
            event, status_code=status, error=error, next_attempt_at=next_attempt
        )

    def run(self, stop: threading.Event) -> None:
        """Deliver due events every ``poll_interval_s`` until ``stop`` is set (the API's thread)."""
        while not stop.wait(self.settings.poll_interval_s):
            try:
                self.deliver_due()
            except Exception:
                log.exception("alert delivery failed; will retry in %ss", self.settings.poll_interval_s)

    def close(self) -> None:
        self._client.close()
