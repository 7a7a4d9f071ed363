"""Who may spend: users (and the system user), their API keys, and their budgets."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from assistant.ledger import keys
from assistant.ledger.base import LedgerBase, naive_utc
from assistant.ledger.errors import AlreadyExists, LedgerError, NotFound
from assistant.ledger.records import WINDOWS, ApiKeyInfo, Budget, BudgetStatus, Principal, User, Window
from assistant.ledger.schema import api_keys, budgets, ledger_entries, users
from assistant.ledger.windows import window_bounds

SYSTEM_USER = "system"
DEFAULT_ALERT_RATIO = 0.8


def committed_micro_usd(conn: sa.Connection, user_id: int, since: datetime) -> int:
    """Settled spend + open reservations - grants since ``since``: the SUM of the entries, never a counter."""
    return int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(ledger_entries.c.amount_micro_usd), 0)).where(
                ledger_entries.c.user_id == user_id, ledger_entries.c.charged_at >= since
            )
        ).scalar_one()
    )


def check_budget_terms(limit_micro_usd: int, window: Window, alert_ratio: float) -> None:
    """The same rules for a user's and a team's budget."""
    if window not in WINDOWS:
        raise LedgerError(f"unknown budget window {window!r}: use one of {', '.join(WINDOWS)}")
    if not isinstance(limit_micro_usd, int) or limit_micro_usd < 0:
        raise LedgerError("a budget limit must be a non-negative whole number of micro-USD")
    if not 0 < alert_ratio <= 1:
        raise LedgerError("the alert ratio must be in (0, 1], e.g. 0.8 to alert at 80%")


class Accounts(LedgerBase):
    _system: Principal | None = None  # looked up (or created) once per ledger

    def system_user(self) -> Principal:
        """The user the CLI, eval and ``--no-auth`` runs are charged to (no budget unless one is set)."""
        if self._system is None:
            self._system = self.system_account(SYSTEM_USER)
        return self._system

    def system_account(self, name: str) -> Principal:
        """A system user by name, created on first use: each kind of spend Penny does on its own behalf
        (calibration, shadow checks) gets its own account, so its budget and usage stand apart."""
        with self._write() as conn:
            row = conn.execute(sa.select(users.c.id, users.c.is_system).where(users.c.name == name)).first()
            if row is None:
                user_id = conn.execute(
                    users.insert().values(name=name, is_system=True, created_at=self._now())
                ).inserted_primary_key[0]
            elif not row.is_system:
                raise LedgerError(f"user {name!r} exists and is not a system account")
            else:
                user_id = row.id
        return Principal(user_id=user_id, user_name=name)

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

    # -- API keys -----------------------------------------------------------------------------------

    def create_key(
        self,
        user_name: str,
        *,
        label: str | None = None,
        expires_at: datetime | None = None,
        profiles: Sequence[str] | None = None,
    ) -> tuple[ApiKeyInfo, str]:
        """A new key for a user: (info, the key). The key is returned only here; we keep its hash.

        ``profiles`` limits the key to those chat profiles (None: all); the API checks the names."""
        user = self.get_user(user_name)
        if label is not None and not 0 < len(label.strip()) <= 100:
            raise LedgerError("a key label must be 1-100 characters")
        if profiles is not None and not profiles:
            raise LedgerError("a key needs at least one profile (or none given: all profiles)")
        with self._write() as conn:
            return self._insert_key(
                conn,
                user.id,
                user.name,
                label=label.strip() if label else None,
                expires_at=naive_utc(expires_at) if expires_at else None,
                profiles=tuple(sorted(set(profiles))) if profiles is not None else None,
            )

    def _insert_key(
        self,
        conn: sa.Connection,
        user_id: int,
        user_name: str,
        *,
        label: str | None,
        expires_at: datetime | None,
        profiles: tuple[str, ...] | None,
    ) -> tuple[ApiKeyInfo, str]:
        api_key = keys.new_api_key()
        info = ApiKeyInfo(
            id=keys.new_key_id(),
            user_name=user_name,
            display=keys.key_display(api_key),
            created_at=self._now(),
            revoked_at=None,
            expires_at=expires_at,
            profiles=profiles,
            label=label,
        )
        conn.execute(
            api_keys.insert().values(
                id=info.id,
                user_id=user_id,
                key_sha256=keys.key_sha256(api_key),
                display=info.display,
                created_at=info.created_at,
                expires_at=expires_at,
                profiles=",".join(profiles) if profiles is not None else None,
                label=label,
            )
        )
        return info, api_key

    def rotate_key(self, key_id: str, grace: timedelta) -> tuple[ApiKeyInfo, ApiKeyInfo, str]:
        """A new key for the same user with the same label and profiles; the old one keeps working until
        now + ``grace`` (never longer than it already would). Returns (old, new, the new key)."""
        if grace < timedelta(0):
            raise LedgerError("the grace period cannot be negative")
        now = self._now()
        with self._write() as conn:
            row = self._key_row(conn, key_id, for_update=True)
            old = _key_info(row)
            if old.status(now) != "active":
                raise LedgerError(f"key {key_id} is {old.status(now)}; create a new key instead")
            ends = now + grace
            if old.expires_at is not None:
                ends = min(ends, old.expires_at)
            conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(expires_at=ends))
            new, api_key = self._insert_key(
                conn,
                row.user_id,
                row.user_name,
                label=old.label,
                expires_at=old.expires_at,
                profiles=old.profiles,
            )
        return dataclasses.replace(old, expires_at=ends), new, api_key

    def revoke_key(self, key_id: str) -> ApiKeyInfo:
        with self._write() as conn:
            row = self._key_row(conn, key_id, for_update=True)
            revoked_at = row.revoked_at or self._now()
            conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=revoked_at))
        return dataclasses.replace(_key_info(row), revoked_at=revoked_at)

    def _key_row(self, conn: sa.Connection, key_id: str, *, for_update: bool = False) -> sa.Row:
        query = (
            sa.select(api_keys, users.c.name.label("user_name"))
            .join(users, users.c.id == api_keys.c.user_id)
            .where(api_keys.c.id == key_id)
        )
        row = conn.execute(query.with_for_update(of=api_keys) if for_update else query).first()
        if row is None:
            raise NotFound(f"no API key {key_id!r}; `penny keys list` shows key ids")
        return row

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
        return [_key_info(r) for r in rows]

    def authenticate(self, api_key: str) -> Principal | None:
        """The key's principal, or None for an unknown, revoked or expired key (callers answer the same 401
        for all three, so nobody learns which keys once existed)."""
        if not api_key or not api_key.startswith(keys.KEY_PREFIX):
            return None
        with self._read() as conn:
            row = conn.execute(
                sa.select(
                    api_keys.c.id,
                    api_keys.c.revoked_at,
                    api_keys.c.expires_at,
                    api_keys.c.profiles,
                    users.c.id.label("user_id"),
                    users.c.name,
                )
                .join(users, users.c.id == api_keys.c.user_id)
                .where(api_keys.c.key_sha256 == keys.key_sha256(api_key))
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        if row.expires_at is not None and row.expires_at <= self._now():
            return None
        profiles = frozenset(row.profiles.split(",")) if row.profiles is not None else None
        return Principal(user_id=row.user_id, user_name=row.name, key_id=row.id, profiles=profiles)

    # -- budgets ------------------------------------------------------------------------------------

    def set_budget(
        self,
        user_name: str,
        limit_micro_usd: int,
        window: Window,
        alert_ratio: float = DEFAULT_ALERT_RATIO,
    ) -> Budget:
        check_budget_terms(limit_micro_usd, window, alert_ratio)
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
            committed = committed_micro_usd(conn, principal.user_id, start)
        budget = Budget(principal.user_name, row.limit_micro_usd, row.window, row.alert_ratio)
        return BudgetStatus(budget, start, reset, committed)


def _key_info(row: sa.Row) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        user_name=row.user_name,
        display=row.display,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        expires_at=row.expires_at,
        profiles=tuple(row.profiles.split(",")) if row.profiles is not None else None,
        label=row.label,
    )
