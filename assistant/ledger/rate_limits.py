"""Rate-limit overrides per user and per API key: stored here, enforced by ``assistant.limits``.

Only the values an operator set are stored; a limit left unset (NULL) follows the default in settings, so
changing a default reaches everyone who was not given their own.
"""

from __future__ import annotations

import sqlalchemy as sa

from assistant.ledger.accounts import Accounts
from assistant.ledger.errors import LedgerError, NotFound
from assistant.ledger.records import RATE_LIMIT_FIELDS, RateLimitOverride, RateLimitScope
from assistant.ledger.schema import api_keys, rate_limits, users


class RateLimits(Accounts):
    def set_rate_limit(
        self, *, user: str | None = None, key_id: str | None = None, **values: int | None
    ) -> RateLimitOverride:
        """Set some of ``rpm``, ``tpm``, ``max_concurrent`` for a user (by name) or a key (by id); limits
        not named keep their value. ``None`` returns a limit to the default, 0 makes it unlimited."""
        unknown = set(values) - set(RATE_LIMIT_FIELDS)
        if unknown:
            raise LedgerError(f"unknown rate limit {sorted(unknown)}: use {', '.join(RATE_LIMIT_FIELDS)}")
        for name, value in values.items():
            if value is not None and (not isinstance(value, int) or value < 0):
                raise LedgerError(f"{name} must be a whole number >= 0 (0 = unlimited), not {value!r}")
        scope, subject = self._rate_limit_subject(user, key_id)
        with self._write() as conn:
            found = conn.execute(
                sa.select(rate_limits.c.scope)
                .where(rate_limits.c.scope == scope, rate_limits.c.subject == subject)
                .with_for_update()
            ).first()
            row = {**values, "updated_at": self._now()}
            if found:
                conn.execute(
                    rate_limits.update()
                    .where(rate_limits.c.scope == scope, rate_limits.c.subject == subject)
                    .values(**row)
                )
            else:
                conn.execute(rate_limits.insert().values(scope=scope, subject=subject, **row))
        return next(o for o in self.rate_limit_overrides() if (o.scope, o.subject) == (scope, subject))

    def clear_rate_limit(self, *, user: str | None = None, key_id: str | None = None) -> bool:
        """Back to the defaults; False when there was no override."""
        scope, subject = self._rate_limit_subject(user, key_id)
        with self._write() as conn:
            deleted = conn.execute(
                rate_limits.delete().where(rate_limits.c.scope == scope, rate_limits.c.subject == subject)
            ).rowcount
        return bool(deleted)

    def rate_limit_overrides(self) -> list[RateLimitOverride]:
        """Every override, users first; small enough to read whole (the API caches it briefly)."""
        key_owner = sa.select(api_keys.c.id, users.c.name).join(users, users.c.id == api_keys.c.user_id)
        with self._read() as conn:
            rows = conn.execute(sa.select(rate_limits).order_by(rate_limits.c.scope.desc())).all()
            user_names = {str(r.id): r.name for r in conn.execute(sa.select(users.c.id, users.c.name))}
            key_users = {r.id: r.name for r in conn.execute(key_owner)}
        overrides = []
        for row in rows:
            owner = (
                user_names.get(row.subject, "?") if row.scope == "user" else key_users.get(row.subject, "?")
            )
            overrides.append(
                RateLimitOverride(
                    scope=row.scope,
                    subject=row.subject,
                    name=owner if row.scope == "user" else row.subject,
                    user_name=owner,
                    rpm=row.rpm,
                    tpm=row.tpm,
                    max_concurrent=row.max_concurrent,
                    updated_at=row.updated_at,
                )
            )
        return sorted(overrides, key=lambda o: (o.scope != "user", o.user_name, o.name))

    def _rate_limit_subject(self, user: str | None, key_id: str | None) -> tuple[RateLimitScope, str]:
        if (user is None) == (key_id is None):
            raise LedgerError("name exactly one of a user or an API key id")
        if user is not None:
            return "user", str(self.get_user(user).id)
        with self._read() as conn:
            if conn.execute(sa.select(api_keys.c.id).where(api_keys.c.id == key_id)).first() is None:
                raise NotFound(f"no API key {key_id!r}; `penny keys list` shows key ids")
        return "key", str(key_id)
