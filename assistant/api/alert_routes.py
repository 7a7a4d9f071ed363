"""Admin route for spend alerts (admin key): the alert events, newest first, with their delivery state and
every attempt, the same as ``penny alerts list``."""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar import Request, get
from litestar.params import Parameter

from assistant.api.auth import ledger_of, require_admin
from assistant.ledger import AlertDelivery, AlertEvent


def _iso(value: Any) -> Any:
    return value.isoformat() + "Z" if hasattr(value, "isoformat") else value


def event_body(event: AlertEvent, deliveries: list[AlertDelivery]) -> dict[str, Any]:
    body = {name: _iso(value) for name, value in dataclasses.asdict(event).items()}
    body["deliveries"] = [
        {name: _iso(value) for name, value in dataclasses.asdict(d).items() if name != "event_id"}
        for d in deliveries
    ]
    return body


@get("/admin/alerts", guards=[require_admin], sync_to_thread=True)
def list_alerts(
    request: Request[Any, Any, Any],
    pending: bool = Parameter(default=False, description="Only events not delivered yet."),
    limit: int = Parameter(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    """Alert events (a budget crossing its alert ratio or exhausted) and their webhook deliveries."""
    ledger = ledger_of(request)
    events = ledger.alert_events(pending_only=pending, limit=limit)
    return {"data": [event_body(e, ledger.alert_deliveries(e.id)) for e in events]}


ALERT_ROUTES: list[Any] = [list_alerts]
