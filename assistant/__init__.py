"""Penny: a RAG-first assistant service (API, answering, local and paid tiers, ledger)."""

__version__ = "0.1.0"
