"""The ledger: who may spend what, and what every answer cost.

Every paid call is bracketed: ``reserve`` (worst case, atomically checked against the budget) →
``mark_sent`` (just before the upstream call) → ``settle`` (actual usage) or ``release`` (nothing spent).
Spend is the SUM of append-only entries, computed inside the same locked transaction that writes the next
entry, so there is no counter to drift. ``UNIQUE(request_id, kind)`` makes a second settle or release
impossible, so a retry or a recovery run can never charge twice.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from assistant.ledger import keys, migrations, usage
from assistant.ledger.engine import SqliteSync, create_ledger_engine, read_transaction
from assistant.ledger.errors import (
    AlreadyExists,
    BudgetExceeded,
    IdempotencyConflict,
    IdempotencyInProgress,
    LedgerError,
    NotFound,
    ReservationClosed,
)
from assistant.ledger.prices import PriceTable, format_usd
from assistant.ledger.records import (
    WINDOWS,
    AnswerRecord,
    ApiKeyInfo,
    Budget,
    BudgetStatus,
    Principal,
    RecoveryReport,
    Reservation,
    StoredResponse,
    Usage,
    User,
    Window,
)
from assistant.ledger.schema import (
    answers,
    api_keys,
    budgets,
    idempotency_keys,
    ledger_entries,
    reservations,
    users,
)
from assistant.ledger.usage import GroupBy, UsageRow
from assistant.ledger.windows import window_bounds

log = logging.getLogger("penny.ledger")

SYSTEM_USER = "system"
DEFAULT_RESERVATION_TTL_S = 300
DEFAULT_ALERT_RATIO = 0.8


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class Ledger:
    def __init__(
        self,
        engine: sa.Engine,
        prices: PriceTable,
        *,
        reservation_ttl_s: int = DEFAULT_RESERVATION_TTL_S,
        local_micro_usd_per_hour: int | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.prices = prices
        self.reservation_ttl_s = reservation_ttl_s
        self.local_micro_usd_per_hour = local_micro_usd_per_hour
        self.clock = clock
        self._system: Principal | None = None

    @classmethod
    def open(
        cls,
        url: str,
        prices: PriceTable,
        *,
        reservation_ttl_s: int = DEFAULT_RESERVATION_TTL_S,
        local_micro_usd_per_hour: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        pool_size: int = 5,
        sqlite_synchronous: SqliteSync = "FULL",
    ) -> Ledger:
        """Connect and bring the schema up to date."""
        engine = create_ledger_engine(url, pool_size=pool_size, sqlite_synchronous=sqlite_synchronous)
        migrations.migrate(engine)
        return cls(
            engine,
            prices,
            reservation_ttl_s=reservation_ttl_s,
            local_micro_usd_per_hour=local_micro_usd_per_hour,
            clock=clock,
        )

    def ping(self) -> None:
        """Raise if the database is unreachable (readiness check)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions -----------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _read(self) -> Any:
        return read_transaction(self.engine)

    def _now(self) -> datetime:
        return _naive_utc(self.clock())

    # -- users, keys, budgets -----------------------------------------------------------------------

    def system_user(self) -> Principal:
        """The user the CLI, eval and ``--no-auth`` runs are charged to (no budget unless one is set)."""
        if self._system is None:
            with self._write() as conn:
                row = conn.execute(sa.select(users.c.id).where(users.c.name == SYSTEM_USER)).first()
                if row is None:
                    user_id = conn.execute(
                        users.insert().values(name=SYSTEM_USER, is_system=True, created_at=self._now())
                    ).inserted_primary_key[0]
                else:
                    user_id = row.id
            self._system = Principal(user_id=user_id, user_name=SYSTEM_USER)
        return self._system

    def add_user(self, name: str) -> User:
        name = name.strip()
        if not name or len(name) > 100:
            raise LedgerError("a user name must be 1-100 characters")
        now = self._now()
        with self._write() as conn:
            if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first():
                raise AlreadyExists(f"user {name!r} already exists")
            user_id = conn.execute(
                users.insert().values(name=name, is_system=False, created_at=now)
            ).inserted_primary_key[0]
        return User(id=user_id, name=name, created_at=now)

    def get_user(self, name: str) -> User:
        with self._read() as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).first()
        if row is None:
            raise NotFound(f"no user {name!r}; create it with `penny users add {name}`")
        return User(id=row.id, name=row.name, created_at=row.created_at)

    def list_users(self) -> list[User]:
        with self._read() as conn:
            rows = conn.execute(sa.select(users).order_by(users.c.name)).all()
        return [User(id=r.id, name=r.name, created_at=r.created_at) for r in rows]

    def create_key(self, user_name: str) -> tuple[ApiKeyInfo, str]:
        """A new key for a user: (info, the key). The key is returned only here; we keep its hash."""
        user = self.get_user(user_name)
        api_key = keys.new_api_key()
        info = ApiKeyInfo(
            id=keys.new_key_id(),
            user_name=user.name,
            display=keys.key_display(api_key),
            created_at=self._now(),
            revoked_at=None,
        )
        with self._write() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=info.id,
                    user_id=user.id,
                    key_sha256=keys.key_sha256(api_key),
                    display=info.display,
                    created_at=info.created_at,
                )
            )
        return info, api_key

    def revoke_key(self, key_id: str) -> ApiKeyInfo:
        with self._write() as conn:
            row = conn.execute(
                sa.select(api_keys, users.c.name.label("user_name"))
                .join(users, users.c.id == api_keys.c.user_id)
                .where(api_keys.c.id == key_id)
            ).first()
            if row is None:
                raise NotFound(f"no API key {key_id!r}; `penny keys list` shows key ids")
            revoked_at = row.revoked_at or self._now()
            conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=revoked_at))
        return ApiKeyInfo(row.id, row.user_name, row.display, row.created_at, revoked_at)

    def list_keys(self, user_name: str | None = None) -> list[ApiKeyInfo]:
        query = (
            sa.select(api_keys, users.c.name.label("user_name"))
            .join(users, users.c.id == api_keys.c.user_id)
            .order_by(users.c.name, api_keys.c.created_at)
        )
        if user_name is not None:
            query = query.where(users.c.name == user_name)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [ApiKeyInfo(r.id, r.user_name, r.display, r.created_at, r.revoked_at) for r in rows]

    def authenticate(self, api_key: str) -> Principal | None:
        """The key's principal, or None for an unknown or revoked key (callers answer 401 for both)."""
        if not api_key or not api_key.startswith(keys.KEY_PREFIX):
            return None
        with self._read() as conn:
            row = conn.execute(
                sa.select(api_keys.c.id, api_keys.c.revoked_at, users.c.id.label("user_id"), users.c.name)
                .join(users, users.c.id == api_keys.c.user_id)
                .where(api_keys.c.key_sha256 == keys.key_sha256(api_key))
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        return Principal(user_id=row.user_id, user_name=row.name, key_id=row.id)

    def set_budget(
        self,
        user_name: str,
        limit_micro_usd: int,
        window: Window,
        alert_ratio: float = DEFAULT_ALERT_RATIO,
    ) -> Budget:
        if window not in WINDOWS:
            raise LedgerError(f"unknown budget window {window!r}: use one of {', '.join(WINDOWS)}")
        if not isinstance(limit_micro_usd, int) or limit_micro_usd < 0:
            raise LedgerError("a budget limit must be a non-negative whole number of micro-USD")
        if not 0 < alert_ratio <= 1:
            raise LedgerError("the alert ratio must be in (0, 1], e.g. 0.8 to alert at 80%")
        user = self.get_user(user_name)
        values = {
            "limit_micro_usd": limit_micro_usd,
            "window": window,
            "alert_ratio": alert_ratio,
            "updated_at": self._now(),
        }
        with self._write() as conn:
            locked = conn.execute(
                sa.select(budgets.c.user_id).where(budgets.c.user_id == user.id).with_for_update()
            ).first()
            if locked:
                conn.execute(budgets.update().where(budgets.c.user_id == user.id).values(**values))
            else:
                conn.execute(budgets.insert().values(user_id=user.id, **values))
        return Budget(user.name, limit_micro_usd, window, alert_ratio)

    def budget_status(self, principal: Principal) -> BudgetStatus | None:
        now = self._now()
        with self._read() as conn:
            row = conn.execute(sa.select(budgets).where(budgets.c.user_id == principal.user_id)).first()
            if row is None:
                return None
            start, reset = window_bounds(row.window, now)
            committed = self._committed(conn, principal.user_id, start)
        budget = Budget(principal.user_name, row.limit_micro_usd, row.window, row.alert_ratio)
        return BudgetStatus(budget, start, reset, committed)

    @staticmethod
    def _committed(conn: sa.Connection, user_id: int, since: datetime) -> int:
        return int(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(ledger_entries.c.amount_micro_usd), 0)).where(
                    ledger_entries.c.user_id == user_id, ledger_entries.c.charged_at >= since
                )
            ).scalar_one()
        )

    def _lock_budget(self, conn: sa.Connection, user_id: int) -> sa.Row | None:
        # PostgreSQL: row lock serialises every spend change for this user. SQLite: a no-op in SQL, the
        # BEGIN IMMEDIATE write lock already serialises all writers.
        return conn.execute(sa.select(budgets).where(budgets.c.user_id == user_id).with_for_update()).first()

    def grant(self, user_name: str, micro_usd: int, note: str = "") -> None:
        """Extra budget for the current window (a negative entry: it lowers committed spend)."""
        self._manual_entry("grant", user_name, -abs(micro_usd), note or "grant")

    def _manual_entry(self, kind: str, user_name: str, amount: int, note: str) -> None:
        user = self.get_user(user_name)
        now = self._now()
        with self._write() as conn:
            self._lock_budget(conn, user.id)
            conn.execute(
                ledger_entries.insert().values(
                    request_id=f"{kind}:{keys.new_key_id()[4:]}:{now.isoformat()}",
                    kind=kind,
                    user_id=user.id,
                    amount_micro_usd=amount,
                    note=note[:300],
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
    ) -> Reservation:
        """Hold the worst case against the budget, atomically; raises BudgetExceeded if it does not fit."""
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
        )
        try:
            self._reserve(
                reservation,
                budget_user=principal,
                prompt_tokens=prompt_tokens,
                max_completion_tokens=max_completion_tokens,
            )
        except sa.exc.IntegrityError as exc:
            raise AlreadyExists(f"request id {request_id!r} already has a reservation") from exc
        return reservation

    def _reserve(
        self,
        reservation: Reservation,
        *,
        budget_user: Principal,
        prompt_tokens: int,
        max_completion_tokens: int,
    ) -> None:
        principal, worst, now = budget_user, reservation.worst_case_micro_usd, reservation.created_at
        with self._write() as conn:
            budget = self._lock_budget(conn, principal.user_id)
            if budget is not None:
                start, reset = window_bounds(budget.window, now)
                committed = self._committed(conn, principal.user_id, start)
                if committed + worst > budget.limit_micro_usd:
                    raise _budget_exceeded(budget, committed, worst, now, reset)
                if committed + worst >= budget.alert_ratio * budget.limit_micro_usd:
                    log.warning(
                        "user %s is at %.0f%% of their %s budget",
                        principal.user_name,
                        100 * (committed + worst) / max(budget.limit_micro_usd, 1),
                        budget.window,
                    )
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
                    "needs_reconciliation": False,
                },
            )
            # Token counts live on the settle entry only; the estimate is on the reservation row.
            self._entry(conn, reservation, "reserve", worst, now, Usage(0, 0, estimated=True))

    def mark_sent(self, reservation: Reservation) -> None:
        """Record that the upstream call is going out; from here a crash means 'maybe spent'."""
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

    def settle(self, reservation: Reservation, usage: Usage) -> int:
        """Charge the actual usage; returns the cost in micro-USD. Safe to call twice: charges once."""
        cost = self.prices.cost_micro_usd(reservation.model, usage)
        now = self._now()
        with self._write() as conn:
            self._lock_budget(conn, reservation.user_id)
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
        return cost

    def release(self, reservation: Reservation, reason: str) -> None:
        """Give the hold back (the upstream call failed or never happened). Idempotent."""
        now = self._now()
        with self._write() as conn:
            self._lock_budget(conn, reservation.user_id)
            row = self._lock_reservation(conn, reservation.request_id)
            if row.state != "open":
                log.info("release of %s ignored: already %s", reservation.request_id, row.state)
                return
            self._release_row(conn, row, reason, now)

    def _release_row(self, conn: sa.Connection, row: sa.Row, reason: str, now: datetime) -> None:
        reservation = _reservation_from_row(row)
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
            },
        )

    def recover_stale(self, now: datetime | None = None) -> RecoveryReport:
        """Resolve expired open reservations (run at start-up and periodically).

        Never sent → released (nothing was spent). Sent but never settled → the process died after the
        upstream may have charged us: settle at the reserved worst case and flag it for reconciliation.
        """
        now = _naive_utc(now) if now else self._now()
        with self._read() as conn:
            stale = conn.execute(
                sa.select(reservations.c.request_id, reservations.c.user_id).where(
                    reservations.c.state == "open", reservations.c.expires_at <= now
                )
            ).all()
        released: list[str] = []
        settled: list[str] = []
        for request_id, user_id in stale:
            with self._write() as conn:
                self._lock_budget(conn, user_id)
                row = self._lock_reservation(conn, request_id)
                if row.state != "open":
                    continue  # settled or released meanwhile by its own process
                if row.sent_at is None:
                    self._release_row(conn, row, "expired before the upstream call was sent", now)
                    released.append(request_id)
                    continue
                self._entry(
                    conn,
                    _reservation_from_row(row),
                    "settle",
                    0,
                    now,
                    Usage(0, 0, estimated=True),
                    note=RECOVERED_NOTE,
                )
                conn.execute(
                    reservations.update()
                    .where(reservations.c.request_id == request_id)
                    .values(
                        state="settled",
                        cost_micro_usd=row.worst_case_micro_usd,
                        needs_reconciliation=True,
                        resolved_at=now,
                        note=RECOVERED_NOTE,
                    )
                )
                settled.append(request_id)
        if released or settled:
            log.warning(
                "recovered stale reservations: %d released, %d settled at worst case",
                len(released),
                len(settled),
            )
        return RecoveryReport(released=released, settled_worst_case=settled)

    def needing_reconciliation(self) -> list[str]:
        with self._read() as conn:
            return list(
                conn.execute(
                    sa.select(reservations.c.request_id)
                    .where(reservations.c.needs_reconciliation.is_(True))
                    .order_by(reservations.c.created_at)
                ).scalars()
            )

    def check_balances(self) -> list[str]:
        """Every request's entries must sum to what its reservation says it cost; returns the mismatches."""
        expected = sa.case(
            (reservations.c.state == "open", reservations.c.worst_case_micro_usd),
            else_=reservations.c.cost_micro_usd,
        )
        totals = (
            sa.select(
                ledger_entries.c.request_id, sa.func.sum(ledger_entries.c.amount_micro_usd).label("total")
            )
            .group_by(ledger_entries.c.request_id)
            .subquery()
        )
        query = sa.select(
            reservations.c.request_id, reservations.c.state, expected, totals.c.total
        ).outerjoin(totals, totals.c.request_id == reservations.c.request_id)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            f"{request_id} ({state}): entries sum to {total}, expected {want}"
            for request_id, state, want, total in rows
            if total != want
        ]

    # -- costs and answers ---------------------------------------------------------------------------

    def local_cost_micro_usd(self, worker_seconds: float) -> int:
        return self.prices.local_cost_micro_usd(worker_seconds, self.local_micro_usd_per_hour)

    def record_answer(self, record: AnswerRecord) -> None:
        """Store one answer's record. A second record for the same request id is ignored (retries)."""
        values = {
            "request_id": record.request_id,
            "user_id": record.principal.user_id,
            "key_id": record.principal.key_id,
            "collection": record.collection,
            "tier": record.tier,
            "escalated": record.escalated,
            "reason": (record.reason or "")[:300] or None,
            "confidence": record.confidence,
            "local_prompt_tokens": record.local_prompt_tokens,
            "local_completion_tokens": record.local_completion_tokens,
            "paid_prompt_tokens": record.paid_prompt_tokens,
            "paid_cached_prompt_tokens": record.paid_cached_prompt_tokens,
            "paid_completion_tokens": record.paid_completion_tokens,
            "paid_usage_estimated": record.paid_usage_estimated,
            "local_cost_micro_usd": record.local_cost_micro_usd,
            "paid_cost_micro_usd": record.paid_cost_micro_usd,
            "latency_ms": record.latency_ms,
            "local_model": record.local_model,
            "paid_model": record.paid_model,
            "price_version": self.prices.version,
            "created_at": self._now(),
        }
        with self._write() as conn:
            if conn.execute(
                sa.select(answers.c.request_id).where(answers.c.request_id == record.request_id)
            ).first():
                log.info("answer %s already recorded", record.request_id)
                return
            conn.execute(answers.insert(), values)

    def answer(self, request_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(answers).where(answers.c.request_id == request_id)).first()
        return dict(row._mapping) if row else None

    # -- usage reports -------------------------------------------------------------------------------

    def usage(
        self, *, user: str | None = None, since: date | datetime | None = None, by: GroupBy = "user"
    ) -> list[UsageRow]:
        if by not in usage.GROUP_BYS:
            raise LedgerError(f"cannot group usage by {by!r}: use one of {', '.join(usage.GROUP_BYS)}")
        user_id = self.get_user(user).id if user is not None else None
        if isinstance(since, date) and not isinstance(since, datetime):
            since = datetime(since.year, since.month, since.day)
        with self._read() as conn:
            return usage.to_rows(conn.execute(usage.usage_query(user_id, since, by)))

    def paid_by_day_model(self, start: date, end: date) -> dict[tuple[str, str], tuple[int, int, int, int]]:
        """{(day, model): (requests, prompt tokens, completion tokens, cost micro-USD)} for [start, end]."""
        lo = datetime(start.year, start.month, start.day)
        hi = datetime(end.year, end.month, end.day) + timedelta(days=1)
        with self._read() as conn:
            rows = conn.execute(usage.paid_by_day_model_query(lo, hi)).all()
        result = {}
        for day, model, *numbers in rows:
            key = (day.isoformat() if isinstance(day, date) else str(day), str(model))
            result[key] = tuple(int(n or 0) for n in numbers)
        return result  # type: ignore[return-value]

    # -- idempotency store ---------------------------------------------------------------------------

    def begin_idempotent(self, principal: Principal, key: str, body: bytes) -> StoredResponse | None:
        """Claim (principal, Idempotency-Key) for this body, or get the stored response of a repeat.

        None: the caller owns the claim and must ``finish_idempotent`` (or ``abandon_idempotent``).
        Raises IdempotencyConflict for a different body (HTTP 422) and IdempotencyInProgress while the
        first request is still running (HTTP 409). A claim older than the reservation TTL is taken over:
        its process died.
        """
        if not key or len(key) > 255:
            raise LedgerError("an Idempotency-Key must be 1-255 characters")
        digest = hashlib.sha256(body).hexdigest()
        now = self._now()
        where = (idempotency_keys.c.user_id == principal.user_id) & (idempotency_keys.c.key == key)
        for _attempt in range(3):
            try:
                with self._write() as conn:
                    row = conn.execute(sa.select(idempotency_keys).where(where).with_for_update()).first()
                    if row is None:
                        conn.execute(
                            idempotency_keys.insert().values(
                                user_id=principal.user_id, key=key, body_sha256=digest, created_at=now
                            )
                        )
                        return None
                    if row.body_sha256 != digest:
                        raise IdempotencyConflict(
                            "this Idempotency-Key was used with a different request body; use a new key"
                        )
                    if row.status_code is not None:
                        return StoredResponse(row.status_code, row.response_body or "")
                    if now - row.created_at < timedelta(seconds=self.reservation_ttl_s):
                        raise IdempotencyInProgress(
                            "a request with this Idempotency-Key is still in progress; retry later"
                        )
                    conn.execute(idempotency_keys.update().where(where).values(created_at=now))
                    return None
            except sa.exc.IntegrityError:
                continue  # PostgreSQL: a concurrent first claim won the insert; read it again
        raise LedgerError("could not claim the Idempotency-Key; retry")

    def finish_idempotent(self, principal: Principal, key: str, status_code: int, body: str) -> None:
        with self._write() as conn:
            conn.execute(
                idempotency_keys.update()
                .where(idempotency_keys.c.user_id == principal.user_id, idempotency_keys.c.key == key)
                .values(status_code=status_code, response_body=body, completed_at=self._now())
            )

    def abandon_idempotent(self, principal: Principal, key: str) -> None:
        """Drop an unfinished claim (the request failed before charging) so a retry can run."""
        with self._write() as conn:
            conn.execute(
                idempotency_keys.delete().where(
                    idempotency_keys.c.user_id == principal.user_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.status_code.is_(None),
                )
            )


ADJECTIVE = {"day": "daily", "month": "monthly", "total": "total"}
RECOVERED_NOTE = "recovered: sent but never settled; charged the worst case"


def _reservation_from_row(row: sa.Row) -> Reservation:
    return Reservation(
        request_id=row.request_id,
        user_id=row.user_id,
        key_id=row.key_id,
        model=row.model,
        worst_case_micro_usd=row.worst_case_micro_usd,
        created_at=row.created_at,
        expires_at=row.expires_at,
        price_version=row.price_version,
    )


def _budget_exceeded(
    budget: sa.Row, committed: int, worst: int, now: datetime, reset: datetime | None
) -> BudgetExceeded:
    limit = format_usd(budget.limit_micro_usd)
    if reset is None:
        return BudgetExceeded(
            f"your total budget of {limit} is used up (this request needs up to "
            f"{format_usd(worst)}); ask an operator to raise it",
            retry_after_s=0,
        )
    retry_after = max(1, math.ceil((reset - now).total_seconds()))
    return BudgetExceeded(
        f"your {ADJECTIVE[budget.window]} budget of {limit} is used up (spent or reserved "
        f"{format_usd(committed)}, this request needs up to {format_usd(worst)}); "
        f"it resets at {reset.isoformat()}Z",
        retry_after_s=retry_after,
    )
