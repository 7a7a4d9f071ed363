"""``Idempotency-Key`` on answering POSTs: a retried request gets the stored response and is charged once."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from litestar import Request, Response

from assistant.api.errors import ApiError
from assistant.ledger import Ledger, Principal

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 255


async def idempotent(
    request: Request[Any, Any, Any],
    ledger: Ledger,
    principal: Principal,
    produce: Callable[[], Awaitable[dict[str, Any]]],
) -> Response[Any]:
    """Run ``produce`` once per (user, key, body); replay its response for repeats.

    The same key with a different body is a 422; a repeat while the first is still running is a 409.
    A request that fails before producing a response releases its claim so the client may retry.
    """
    key = request.headers.get(HEADER)
    if not key:
        return Response(await produce())
    if len(key) > MAX_KEY_LENGTH:
        raise ApiError(400, f"Idempotency-Key longer than {MAX_KEY_LENGTH} characters", param=HEADER)
    raw = await request.body()
    stored = await anyio.to_thread.run_sync(ledger.begin_idempotent, principal, key, raw)
    if stored is not None:
        return Response(
            json.loads(stored.body), status_code=stored.status_code, headers={"Idempotent-Replayed": "true"}
        )
    try:
        body = await produce()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(ledger.abandon_idempotent, principal, key)
        raise
    await anyio.to_thread.run_sync(ledger.finish_idempotent, principal, key, 200, json.dumps(body))
    return Response(body)
