"""Penny: a RAG-first assistant service (API, cascade, evaluator, upstream client, ledger, pool)."""

__version__ = "0.1.0"
