"""The spend dashboard: ``GET /dashboard`` (the page) and ``GET /v1/dashboard`` (its numbers and chart).

Who sees what: the admin key sees everyone's spend (or one team's, ``?team=NAME``); a team's admins see
that team's, and must name it; anyone else gets 403, as ``GET /v1/usage?team=`` does, so a user never
reads another user's or team's spend. Money is shown as ``penny usage`` shows it (``format_usd``), so the
page and the CLI print the same numbers.
"""

from __future__ import annotations

from datetime import date, timedelta
from importlib import resources
from typing import Any

from litestar import MediaType, Request, get
from litestar.params import FromQuery

from assistant.api.auth import acting_principal, ledger_of, require_api_or_admin_key
from assistant.api.errors import ApiError
from assistant.api.spend_chart import stacked_cost_svg
from assistant.ledger import Ledger, UsageRow
from assistant.ledger.ownership import OwnershipRow
from assistant.ledger.prices import format_usd
from assistant.ledger.trends import BudgetBurn
from assistant.ledger.usage import savings_shown, usage_total

TOP_N = 5
TIERS = ("local", "paid")


@get("/dashboard", sync_to_thread=False, media_type=MediaType.HTML, include_in_schema=False)
def dashboard_page() -> str:
    """The spend dashboard page: plain HTML and JS; the chart comes drawn from the server."""
    return resources.files("assistant").joinpath("data/web/dashboard.html").read_text(encoding="utf-8")


@get("/v1/dashboard", guards=[require_api_or_admin_key], sync_to_thread=True)
def dashboard(
    request: Request[Any, Any, Any],
    days: FromQuery[int] = 30,
    team: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """Spend per day by tier, savings, escalation rate, top users, teams and collections (cost of
    ownership), budget burn and recent alerts for the last ``days`` days (UTC, today included)."""
    if not 1 <= days <= 366:
        raise ApiError(400, "days must be between 1 and 366", param="days")
    ledger = ledger_of(request)
    principal = acting_principal(request)
    if principal is not None:  # a user's key: only a team they are an admin of
        if team is None:
            raise ApiError(
                403,
                "the spend dashboard is for the admin key and team admins: add ?team=<a team you admin>",
                param="team",
                code="forbidden",
            )
        team = ledger.require_team_admin(principal, team).name
    elif team is not None:
        team = ledger.get_team(team).name
    today = ledger.clock().date()
    since = today - timedelta(days=days - 1)
    return report(ledger, since, today, team)


def report(ledger: Ledger, since: date, today: date, team: str | None) -> dict[str, Any]:
    day_list = [(since + timedelta(days=i)).isoformat() for i in range((today - since).days + 1)]
    cost = {tier: [0] * len(day_list) for tier in TIERS}
    index = {day: i for i, day in enumerate(day_list)}
    for line in ledger.cost_by_day(since=since, team=team):
        if line.day in index:
            cost.setdefault(line.tier, [0] * len(day_list))[index[line.day]] += line.cost_micro_usd
    by_day = ledger.usage(team=team, since=since, by="day")
    by_user = ledger.usage(team=team, since=since, by="user")
    by_collection = ledger.ownership(by="collection", team=team, since=since)
    by_team = ledger.ownership(by="team", team=team, since=since)
    outcomes = ledger.outcomes(since=since, team=team)
    totals = usage_total(by_day)
    events = [e for e in ledger.alert_events(limit=50) if e.created_at.date() >= since]
    if team is not None:
        events = [e for e in events if e.scope == "team" and e.subject == team]
    return {
        "object": "dashboard",
        "team": team,
        "since": since.isoformat(),
        "until": today.isoformat(),
        "totals": {
            **_money(totals),
            "local": format_usd(sum(cost["local"])),
            "paid": format_usd(sum(cost["paid"])),
            "answers": outcomes.answers,
            "escalated": outcomes.escalated,
            "abstained": outcomes.abstained,
            "escalation_rate": outcomes.escalation_rate,
            # answers' paid and local cost plus retrieval, evaluation, ingest and storage (`penny usage
            # --by collection`'s TOTAL_USD); paid spend outside answers (shadow checks) is not in it
            "cost_of_ownership": format_usd(sum(row.total_micro_usd for row in by_collection)),
        },
        "days": [
            {"day": day, **{tier: format_usd(c[i]) for tier, c in cost.items()}}
            for i, day in enumerate(day_list)
        ],
        "savings_by_day": [{"day": row.key, **_money(row)} for row in by_day],
        "top_users": [
            {"name": row.key, "requests": row.requests, **_money(row)}
            for row in sorted(by_user, key=lambda r: (-r.cost_micro_usd, r.key))[:TOP_N]
        ],
        "top_teams": _owners(by_team),
        "top_collections": _owners(by_collection),
        "budgets": [_burn(b) for b in ledger.budget_burn(team=team)],
        "alerts": [
            {
                "kind": e.kind,
                "scope": e.scope,
                "subject": e.subject,
                "window": e.window,
                "spend": format_usd(e.spend_micro_usd),
                "limit": format_usd(e.limit_micro_usd),
                "alert_ratio": e.alert_ratio,
                "created_at": e.created_at.isoformat() + "Z",
                **({} if e.projected_micro_usd is None else {"projected": format_usd(e.projected_micro_usd)}),
            }
            for e in events[:10]
        ],
        "chart_svg": stacked_cost_svg(day_list, cost),
    }


def _owners(rows: list[OwnershipRow]) -> list[dict[str, Any]]:
    """The top collections or teams by cost of ownership, as `penny usage --by collection|team` shows them."""
    top = sorted(rows, key=lambda r: (-r.total_micro_usd, r.key))[:TOP_N]
    return [
        {
            "name": row.key,
            "answers": row.answers,
            "ingest_and_storage": format_usd(row.ingest_micro_usd + row.storage_micro_usd),
            "total": format_usd(row.total_micro_usd),
        }
        for row in top
    ]


def _money(row: UsageRow) -> dict[str, Any]:
    """Cost and savings as ``penny usage`` prints them: "$0.0123", a signed saving, "41.2%", "-" unknown."""
    paid_only, saved, percent = savings_shown(row)
    return {
        "cost": format_usd(row.cost_micro_usd),
        "paid_only": paid_only,
        "saved": saved,
        "saved_percent": percent,
        "unknown_answers": row.unknown_answers,
    }


def _burn(burn: BudgetBurn) -> dict[str, Any]:
    projected = burn.projected_micro_usd
    return {
        "scope": burn.scope,
        "name": burn.name,
        "window": burn.window,
        "spend": format_usd(burn.spend_micro_usd),
        "limit": format_usd(burn.limit_micro_usd),
        "used_ratio": burn.spend_micro_usd / burn.limit_micro_usd if burn.limit_micro_usd else None,
        "projected": None if projected is None else format_usd(projected),
        "projected_over": burn.projected_over,
        "resets_at": None if burn.resets_at is None else burn.resets_at.isoformat() + "Z",
    }


DASHBOARD_ROUTES: list[Any] = [dashboard_page, dashboard]
