"""Spend alerts: signing webhook bodies (``signing``) and delivering the ledger's alert events
(``webhook``). The events themselves are written by the ledger, in the transaction that crossed the
threshold (``assistant.ledger.alerts``)."""

from assistant.alerts.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, sign, verify_signature

__all__ = ["EVENT_ID_HEADER", "SIGNATURE_HEADER", "sign", "verify_signature"]
