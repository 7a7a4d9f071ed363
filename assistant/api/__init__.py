"""Penny's HTTP API (Litestar)."""

from assistant.api.app import create_app

__all__ = ["create_app"]
