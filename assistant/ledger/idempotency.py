"""The idempotency store: a request's (principal, Idempotency-Key) is claimed once, and a repeat gets the
stored response instead of being answered (and charged) again."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import sqlalchemy as sa

from assistant.ledger.base import LedgerBase
from assistant.ledger.errors import IdempotencyConflict, IdempotencyInProgress, LedgerError
from assistant.ledger.records import Principal, StoredResponse
from assistant.ledger.schema import idempotency_keys


class Idempotency(LedgerBase):
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
