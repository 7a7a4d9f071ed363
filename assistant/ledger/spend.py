"""Spending: a paid call's worst case is reserved against the budget, then settled at its actual cost or
released; operators can grant extra budget.

Every change to a user's spend runs under their budget lock (``_lock_budget``), and spend is the SUM of
append-only ``ledger_entries`` computed inside that same transaction, so there is no counter to drift.
A call charged to a team too (``Principal.team_id``) also takes the team's budget lock, always after the
user's (one fixed order, so two transactions can never wait on each other's locks), and its entries carry
the team, so the team's spend is the same kind of SUM. ``UNIQUE(request_id, kind)`` makes a second settle
or release impossible.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import datetime, timedelta

import sqlalchemy as sa

from assistant.ledger import keys
from assistant.ledger.accounts import committed_micro_usd
from assistant.ledger.alerts import check_crossing, record_alert
from assistant.ledger.answers import answer_values, insert_answer
from assistant.ledger.errors import AlreadyExists, BudgetExceeded, NotFound, ReservationClosed
from assistant.ledger.prices import format_usd
from assistant.ledger.records import AnswerRecord, BudgetScope, Principal, Reservation, Usage
from assistant.ledger.schema import budgets, ledger_entries, reservations, team_budgets, teams
from assistant.ledger.teams import Teams, team_committed_micro_usd
from assistant.ledger.windows import window_bounds

log = logging.getLogger("penny.ledger")

ADJECTIVE = {"day": "daily", "month": "monthly", "total": "total"}
RECOVERED_NOTE = "recovered: sent but never settled; charged the worst case"


class Spend(Teams):
    def _lock_budget(self, conn: sa.Connection, user_id: int) -> sa.Row | None:
        # PostgreSQL: row lock serialises every spend change for this user. SQLite: a no-op in SQL, the
        # BEGIN IMMEDIATE write lock already serialises all writers.
        return conn.execute(sa.select(budgets).where(budgets.c.user_id == user_id).with_for_update()).first()

    def _lock_budgets(
        self, conn: sa.Connection, user_id: int, team_id: int | None
    ) -> tuple[sa.Row | None, sa.Row | None]:
        """The user's budget row, then the team's: always in this order (no deadlock between members)."""
        user_budget = self._lock_budget(conn, user_id)
        if team_id is None:
            return user_budget, None
        team_budget = conn.execute(
            sa.select(team_budgets, teams.c.name.label("team_name"))
            .join(teams, teams.c.id == team_budgets.c.team_id)
            .where(team_budgets.c.team_id == team_id)
            .with_for_update(of=team_budgets)
        ).first()
        return user_budget, team_budget

    def grant(self, user_name: str, micro_usd: int, note: str = "") -> None:
        """Extra budget for the current window (a negative entry: it lowers committed spend)."""
        user = self.get_user(user_name)
        now = self._now()
        with self._write() as conn:
            self._lock_budget(conn, user.id)
            conn.execute(
                ledger_entries.insert().values(
                    request_id=f"grant:{keys.new_key_id()[4:]}:{now.isoformat()}",
                    kind="grant",
                    user_id=user.id,
                    amount_micro_usd=-abs(micro_usd),
                    note=(note or "grant")[:300],
                    charged_at=now,
                    created_at=now,
                )
            )

    # -- reserve → mark_sent → settle / release ------------------------------------------------------

    def reserve(
        self,
        *,
        request_id: str,
        principal: Principal,
        model: str,
        prompt_tokens: int,
        max_completion_tokens: int,
        sent: bool = False,
    ) -> Reservation:
        """Hold the worst case against the budget, atomically; raises BudgetExceeded if it does not fit.

        ``sent``: the paid call goes out as soon as this returns, so record it as sent in the same
        transaction instead of a ``mark_sent`` commit of its own. A crash between this commit and the call
        is then charged the worst case by recovery (flagged for reconciliation) rather than released: the
        same outcome as a crash after ``mark_sent`` while the request is being sent, a window this widens
        by nothing but the Python in between."""
        price = self.prices.price(model)
        worst = self.prices.worst_case_micro_usd(model, prompt_tokens, max_completion_tokens)
        now = self._now()
        reservation = Reservation(
            request_id=request_id,
            user_id=principal.user_id,
            key_id=principal.key_id,
            model=price.model,
            worst_case_micro_usd=worst,
            created_at=now,
            expires_at=now + timedelta(seconds=self.reservation_ttl_s),
            price_version=self.prices.version,
            team_id=principal.team_id,
        )
        try:
            refusal = self._reserve(
                reservation,
                budget_user=principal,
                prompt_tokens=prompt_tokens,
                max_completion_tokens=max_completion_tokens,
                sent=sent,
            )
        except sa.exc.IntegrityError as exc:
            raise AlreadyExists(f"request id {request_id!r} already has a reservation") from exc
        if refusal is not None:
            raise refusal
        return reservation

    def _reserve(
        self,
        reservation: Reservation,
        *,
        budget_user: Principal,
        prompt_tokens: int,
        max_completion_tokens: int,
        sent: bool,
    ) -> BudgetExceeded | None:
        """Write the reservation, or return why it does not fit (after committing the alert that says so:
        raising inside the transaction would roll the alert back with it)."""
        principal, worst, now = budget_user, reservation.worst_case_micro_usd, reservation.created_at
        refusal: BudgetExceeded | None = None
        with self._write() as conn:
            budget, team_budget = self._lock_budgets(conn, principal.user_id, reservation.team_id)
            if budget is not None:
                refusal = _check(
                    conn, "user", principal.user_id, principal.user_name, budget, worst, now, None
                )
            if team_budget is not None and refusal is None:
                refusal = _check(
                    conn, "team", team_budget.team_id, team_budget.team_name, team_budget, worst, now, "team"
                )
            if refusal is not None:
                # Commit the refusal's "exhausted" event (the only write); the reservation is not made.
                return refusal
            conn.execute(
                reservations.insert(),
                {
                    "request_id": reservation.request_id,
                    "user_id": principal.user_id,
                    "key_id": principal.key_id,
                    "model": reservation.model,
                    "price_version": reservation.price_version,
                    "prompt_tokens": prompt_tokens,
                    "max_completion_tokens": max_completion_tokens,
                    "worst_case_micro_usd": worst,
                    "created_at": now,
                    "expires_at": reservation.expires_at,
                    "state": "open",
                    "sent_at": now if sent else None,
                    "needs_reconciliation": False,
                    "team_id": reservation.team_id,
                },
            )
            # Token counts live on the settle entry only; the estimate is on the reservation row.
            self._entry(conn, reservation, "reserve", worst, now, Usage(0, 0, estimated=True))
        return None

    def mark_sent(self, reservation: Reservation) -> None:
        """Record that the paid call is going out; from here a crash means 'maybe spent'."""
        with self._write() as conn:
            updated = conn.execute(
                reservations.update()
                .where(reservations.c.request_id == reservation.request_id, reservations.c.state == "open")
                .values(sent_at=self._now())
            ).rowcount
        if updated != 1:
            raise ReservationClosed(
                f"reservation {reservation.request_id!r} is no longer open (expired and recovered, or "
                "already settled); do not call the upstream, reserve again"
            )

    def settle(self, reservation: Reservation, usage: Usage, *, answer: AnswerRecord | None = None) -> int:
        """Charge the actual usage; returns the cost in micro-USD. Safe to call twice: charges once.

        ``answer``: also record this answer, at the cost charged, in the same transaction: the paid flow's
        last two writes become one commit (and the answer exists exactly when the charge does)."""
        cost = self.prices.cost_micro_usd(reservation.model, usage)
        now = self._now()
        with self._write() as conn:
            charged = self._settle_within_hold(conn, reservation, usage, cost, now)
            if charged is None:
                charged = self._settle(conn, reservation, usage, cost, now)
            if answer is not None:
                if answer.tier == "paid":  # paid-only: its charge; a batch call's, the live price not paid
                    live = self.prices.live_cost_micro_usd(reservation.model, usage)
                    answer = replace(answer, paid_only_micro_usd=live if live > cost else charged)
                row = answer_values(replace(answer, paid_cost_micro_usd=charged), self.prices.version, now)
                conn.execute(insert_answer(self.engine), row)
        return charged

    def _settle_within_hold(
        self, conn: sa.Connection, reservation: Reservation, usage: Usage, cost: int, now: datetime
    ) -> int | None:
        """The usual settle in two statements: an open reservation whose worst case covers the cost is
        closed and its entry written; None when it is not so (closed already, or the cost above the hold),
        for :meth:`_settle`.

        No budget lock and no threshold check are needed here: spend only falls (by worst case - cost),
        and every level it held was checked when the worst case was reserved. A concurrent reservation
        reads the spend before or after this commit, both of them true states. The reservation's row lock
        (the UPDATE's) makes a concurrent second settle, release or recovery wait, then find it closed."""
        if cost > reservation.worst_case_micro_usd:
            return None
        worst = conn.execute(
            reservations.update()
            .where(
                reservations.c.request_id == reservation.request_id,
                reservations.c.state == "open",
                reservations.c.worst_case_micro_usd >= cost,
            )
            .values(state="settled", cost_micro_usd=cost, resolved_at=now)
            .returning(reservations.c.worst_case_micro_usd)
        ).scalar()
        if worst is None:
            return None
        self._entry(conn, reservation, "settle", cost - worst, now, usage)
        return cost

    def _settle(
        self, conn: sa.Connection, reservation: Reservation, usage: Usage, cost: int, now: datetime
    ) -> int:
        """Settle under the budget locks (user, then team) and the reservation's: a second settle, a late
        one after recovery, a cost above the hold (which can cross a threshold)."""
        budget, team_budget = self._lock_budgets(conn, reservation.user_id, reservation.team_id)
        row = self._lock_reservation(conn, reservation.request_id)
        if row.state == "released":
            raise ReservationClosed(
                f"reservation {reservation.request_id!r} was released ({row.note}); nothing to settle"
            )
        if row.state == "settled":
            if not row.needs_reconciliation or row.note != RECOVERED_NOTE:
                return int(row.cost_micro_usd)
            # Recovery charged the worst case while this call was still running: correct it once.
            self._entry(
                conn,
                reservation,
                "adjust",
                cost - row.worst_case_micro_usd,
                now,
                usage,
                note="late settle after recovery",
            )
            conn.execute(
                reservations.update()
                .where(reservations.c.request_id == reservation.request_id)
                .values(cost_micro_usd=cost, note="recovered, then settled late", resolved_at=now)
            )
            return cost
        if cost > row.worst_case_micro_usd:
            log.warning(
                "request %s cost %d micro-USD, above its reserved worst case %d (prompt estimate low?)",
                reservation.request_id,
                cost,
                row.worst_case_micro_usd,
            )
        self._entry(conn, reservation, "settle", cost - row.worst_case_micro_usd, now, usage)
        conn.execute(
            reservations.update()
            .where(reservations.c.request_id == reservation.request_id)
            .values(state="settled", cost_micro_usd=cost, resolved_at=now)
        )
        # The actual cost may exceed the worst case held, so settling can cross a threshold too.
        _check_settled(conn, reservation, budget, team_budget, now)
        return cost

    def release(self, reservation: Reservation, reason: str) -> None:
        """Give the hold back (the paid call failed or never happened). Idempotent."""
        now = self._now()
        with self._write() as conn:
            self._lock_budgets(conn, reservation.user_id, reservation.team_id)
            row = self._lock_reservation(conn, reservation.request_id)
            if row.state != "open":
                log.info("release of %s ignored: already %s", reservation.request_id, row.state)
                return
            self._release_row(conn, row, reason, now)

    def _release_row(self, conn: sa.Connection, row: sa.Row, reason: str, now: datetime) -> None:
        reservation = reservation_from_row(row)
        note = f"{reason} (after send)" if row.sent_at else reason
        self._entry(conn, reservation, "release", -row.worst_case_micro_usd, now, Usage(0, 0), note=note)
        conn.execute(
            reservations.update()
            .where(reservations.c.request_id == row.request_id)
            .values(state="released", cost_micro_usd=0, resolved_at=now, note=note[:300])
        )

    def _lock_reservation(self, conn: sa.Connection, request_id: str) -> sa.Row:
        row = conn.execute(
            sa.select(reservations).where(reservations.c.request_id == request_id).with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"no reservation {request_id!r}")
        return row

    def _entry(
        self,
        conn: sa.Connection,
        reservation: Reservation,
        kind: str,
        amount: int,
        now: datetime,
        usage: Usage,
        note: str | None = None,
    ) -> None:
        conn.execute(
            ledger_entries.insert(),
            {
                "request_id": reservation.request_id,
                "kind": kind,
                "user_id": reservation.user_id,
                "key_id": reservation.key_id,
                "model": reservation.model,
                "amount_micro_usd": amount,
                "prompt_tokens": usage.prompt_tokens,
                "cached_prompt_tokens": usage.cached_prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "estimated": usage.estimated,
                "note": note[:300] if note else None,
                "charged_at": reservation.created_at,
                "created_at": now,
                "team_id": reservation.team_id,
            },
        )


def reservation_from_row(row: sa.Row) -> Reservation:
    return Reservation(
        request_id=row.request_id,
        user_id=row.user_id,
        key_id=row.key_id,
        model=row.model,
        worst_case_micro_usd=row.worst_case_micro_usd,
        created_at=row.created_at,
        expires_at=row.expires_at,
        price_version=row.price_version,
        team_id=row.team_id,
    )


def _check(
    conn: sa.Connection,
    scope: BudgetScope,
    subject_id: int,
    subject_name: str,
    budget: sa.Row,
    worst: int,
    now: datetime,
    team: str | None,
) -> BudgetExceeded | None:
    """Why the worst case does not fit this budget (recording it as exhausted), or None; record the
    thresholds that spend including this hold reaches."""
    start, reset = window_bounds(budget.window, now)
    if scope == "user":
        committed = committed_micro_usd(conn, subject_id, start)
    else:
        committed = team_committed_micro_usd(conn, subject_id, start)
    alert = {"scope": scope, "subject_id": subject_id, "subject_name": subject_name, "budget": budget}
    if committed + worst > budget.limit_micro_usd:
        record_alert(conn, kind="exhausted", window_start=start, spend_micro_usd=committed, now=now, **alert)
        return _budget_exceeded(budget, committed, worst, now, reset, subject_name if team else None)
    check_crossing(conn, window_start=start, spend_micro_usd=committed + worst, now=now, **alert)
    return None


def _check_settled(
    conn: sa.Connection,
    reservation: Reservation,
    budget: sa.Row | None,
    team_budget: sa.Row | None,
    now: datetime,
) -> None:
    """Thresholds reached by a settle, in the window the request is charged to (its reservation's)."""
    subjects = []
    if budget is not None:
        subjects.append(("user", reservation.user_id, None, budget, committed_micro_usd))
    if team_budget is not None:
        subjects.append(
            ("team", team_budget.team_id, team_budget.team_name, team_budget, team_committed_micro_usd)
        )
    for scope, subject_id, subject_name, row, committed in subjects:
        start, _ = window_bounds(row.window, reservation.created_at)
        check_crossing(
            conn,
            scope=scope,
            subject_id=subject_id,
            subject_name=subject_name,
            budget=row,
            window_start=start,
            spend_micro_usd=committed(conn, subject_id, start),
            now=now,
        )


def _budget_exceeded(
    budget: sa.Row, committed: int, worst: int, now: datetime, reset: datetime | None, team: str | None = None
) -> BudgetExceeded:
    limit = format_usd(budget.limit_micro_usd)
    whose = "your" if team is None else f"team {team}'s"
    if reset is None:
        return BudgetExceeded(
            f"{whose} total budget of {limit} is used up (this request needs up to "
            f"{format_usd(worst)}); ask an operator to raise it",
            retry_after_s=0,
        )
    retry_after = max(1, math.ceil((reset - now).total_seconds()))
    return BudgetExceeded(
        f"{whose} {ADJECTIVE[budget.window]} budget of {limit} is used up (spent or reserved "
        f"{format_usd(committed)}, this request needs up to {format_usd(worst)}); "
        f"it resets at {reset.isoformat()}Z",
        retry_after_s=retry_after,
    )
