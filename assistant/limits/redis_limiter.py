"""The shared limiter: the same sliding-window logs as ``memory.py``, kept in Redis, so limits hold across
``penny serve`` processes and replicas.

Per scope three keys: ``<prefix>:<scope>:log`` (a sorted set of admission ids by admission time, ms),
``…:tok`` (a hash: admission id -> paid tokens, plus ``_total``) and ``…:lease`` (a sorted set of
admission ids by lease expiry). Admission is one Lua script: trim every scope's window, check every limit,
and record the admission in every scope, atomically, so there is no check-then-act race between processes
and no partial admission. Time is Redis's own clock (``TIME``), so replicas with skewed clocks agree.

Hand-written Lua rather than the ``limits`` package: it has no way to give tokens back (settlement) nor
leases with expiry (concurrency), both of which this needs.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import redis
from redis.exceptions import RedisError

from assistant.limits.base import (
    WINDOW_S,
    Admission,
    Denial,
    Limiter,
    LimiterUnavailable,
    RateHeaders,
    Reason,
    Scope,
    ScopeUsage,
    new_admission_id,
    refusal,
)

log = logging.getLogger("penny.limits")

OnError = Literal["allow", "refuse"]
WARN_EVERY_S = 60.0
CONCURRENCY_RETRY_MS = 1000

# KEYS: log, tok, lease for each scope. ARGV: id, tokens, window_ms, lease_ttl_ms, then rpm, tpm,
# max_concurrent for each scope. Returns {allowed, per scope: requests, tokens, in_flight, oldest_ms (-1:
# none)} and, when refused, then {reason, scope index (1-based), retry_ms} for each limit that refused.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, tokens = ARGV[1], tonumber(ARGV[2])
local window, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = #KEYS / 3
local usage, denials = {}, {}

local function trim(log, tok)
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', now - window)
  local freed = 0
  for i = 1, #old, 500 do
    local batch = {unpack(old, i, math.min(i + 499, #old))}
    for _, v in ipairs(redis.call('HMGET', tok, unpack(batch))) do freed = freed + (tonumber(v) or 0) end
    redis.call('HDEL', tok, unpack(batch))
  end
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
    redis.call('HINCRBY', tok, '_total', -freed)
  end
end

for s = 1, n do
  local log, tok, lease = KEYS[3*s-2], KEYS[3*s-1], KEYS[3*s]
  local rpm, tpm, conc = tonumber(ARGV[3*s+2]), tonumber(ARGV[3*s+3]), tonumber(ARGV[3*s+4])
  trim(log, tok)
  redis.call('ZREMRANGEBYSCORE', lease, '-inf', now)
  local count = redis.call('ZCARD', log)
  local used = tonumber(redis.call('HGET', tok, '_total') or '0')
  local held = redis.call('ZCARD', lease)
  if rpm > 0 and count >= rpm then
    local e = redis.call('ZRANGE', log, count - rpm, count - rpm, 'WITHSCORES')
    table.insert(denials, {'requests', s, tonumber(e[2]) + window - now})
  end
  if tpm > 0 and tokens > tpm then
    table.insert(denials, {'too_large', s, window})
  elseif tpm > 0 and used + tokens > tpm then
    local freed, start = 0, 0
    while true do
      local batch = redis.call('ZRANGE', log, start, start + 99, 'WITHSCORES')
      if #batch == 0 then break end
      local ids = {}
      for i = 1, #batch, 2 do table.insert(ids, batch[i]) end
      local amounts = redis.call('HMGET', tok, unpack(ids))
      local found = false
      for i = 1, #ids do
        freed = freed + (tonumber(amounts[i]) or 0)
        if used - freed + tokens <= tpm then
          table.insert(denials, {'tokens', s, tonumber(batch[2*i]) + window - now})
          found = true
          break
        end
      end
      if found then break end
      start = start + 100
    end
  end
  if conc > 0 and held >= conc then table.insert(denials, {'concurrent', s, 1000}) end
  usage[s] = {count, used, held}
end

local allowed = #denials == 0
if allowed then
  for s = 1, n do
    local log, tok, lease = KEYS[3*s-2], KEYS[3*s-1], KEYS[3*s]
    local rpm, tpm, conc = tonumber(ARGV[3*s+2]), tonumber(ARGV[3*s+3]), tonumber(ARGV[3*s+4])
    if rpm > 0 or tpm > 0 then
      redis.call('ZADD', log, now, id)
      redis.call('HSET', tok, id, tokens)
      redis.call('HINCRBY', tok, '_total', tokens)
      redis.call('PEXPIRE', log, window)
      redis.call('PEXPIRE', tok, window)
      usage[s][1] = usage[s][1] + 1
      usage[s][2] = usage[s][2] + tokens
    end
    if conc > 0 then
      redis.call('ZADD', lease, now + ttl, id)
      redis.call('PEXPIRE', lease, ttl)
      usage[s][3] = usage[s][3] + 1
    end
  end
end

local out = {allowed and 1 or 0}
for s = 1, n do
  local oldest = redis.call('ZRANGE', KEYS[3*s-2], 0, 0, 'WITHSCORES')
  local oldest_ms = -1
  if #oldest > 0 then oldest_ms = tonumber(oldest[2]) + window - now end
  for _, v in ipairs({usage[s][1], usage[s][2], usage[s][3], oldest_ms}) do table.insert(out, v) end
end
for _, d in ipairs(denials) do
  for _, v in ipairs(d) do table.insert(out, v) end
end
return out
"""

# KEYS: tok for each scope. ARGV: id, tokens. An entry already out of the window is left alone.
SETTLE = """
for _, tok in ipairs(KEYS) do
  local old = redis.call('HGET', tok, ARGV[1])
  if old then
    redis.call('HSET', tok, ARGV[1], ARGV[2])
    redis.call('HINCRBY', tok, '_total', tonumber(ARGV[2]) - tonumber(old))
  end
end
return 1
"""


class RedisLimiter(Limiter):
    """Limits shared by every process using the same Redis and prefix.

    ``on_error``: what to do when Redis cannot be reached. ``allow`` (the default) admits the request
    uncounted and logs a warning (at most once a minute): a rate limiter protects capacity, while money is
    guarded separately by the ledger's budgets, so a Redis outage should not take answering down with it.
    ``refuse`` raises ``LimiterUnavailable`` (HTTP 503) for deployments where the limits must never lapse.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "penny:limits",
        window_s: float = WINDOW_S,
        lease_ttl_s: float = 600.0,
        on_error: OnError = "allow",
        timeout_s: float = 0.5,
        client: redis.Redis | None = None,
    ) -> None:
        super().__init__(window_s=window_s, lease_ttl_s=lease_ttl_s)
        self.prefix = prefix
        self.on_error = on_error
        self.redis = client or redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self._admit_script = self.redis.register_script(ADMIT)
        self._settle_script = self.redis.register_script(SETTLE)
        self._last_warning = 0.0

    def keys(self, scope: Scope) -> tuple[str, str, str]:
        base = f"{self.prefix}:{scope.name}"
        return f"{base}:log", f"{base}:tok", f"{base}:lease"

    def _admit(self, scopes: tuple[Scope, ...], tokens: int) -> Admission:
        admission_id = new_admission_id()
        keys = [key for scope in scopes for key in self.keys(scope)]
        args: list[Any] = [admission_id, tokens, _ms(self.window_s), _ms(self.lease_ttl_s)]
        for scope in scopes:
            args += [scope.limits.rpm, scope.limits.tpm, scope.limits.max_concurrent]
        try:
            reply = self._admit_script(keys=keys, args=args)
        except RedisError as exc:
            return self._unavailable(exc, admission_id, scopes, tokens)
        allowed, rest = int(reply[0]), reply[1:]
        usages = [
            ScopeUsage(
                scope,
                int(rest[4 * i]),
                int(rest[4 * i + 1]),
                int(rest[4 * i + 2]),
                None if int(rest[4 * i + 3]) < 0 else int(rest[4 * i + 3]) / 1000,
            )
            for i, scope in enumerate(scopes)
        ]
        headers = RateHeaders.of(usages)
        if not allowed:
            raw = rest[4 * len(scopes) :]
            denials: list[Denial] = [
                (_reason(raw[i]), scopes[int(raw[i + 1]) - 1], int(raw[i + 2]) / 1000)
                for i in range(0, len(raw), 3)
            ]
            raise refusal(denials, headers)
        return Admission(admission_id, scopes, tokens, headers=headers)

    def _settle(self, admission: Admission, tokens: int) -> None:
        keys = [self.keys(scope)[1] for scope in admission.scopes]
        try:
            self._settle_script(keys=keys, args=[admission.id, tokens])
        except RedisError as exc:  # the estimate stays until it leaves the window: over-counts, briefly
            self._warn("could not settle paid tokens", exc)

    def _release(self, admission: Admission) -> None:
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                for scope in admission.scopes:
                    if scope.limits.max_concurrent:
                        pipe.zrem(self.keys(scope)[2], admission.id)
                pipe.execute()
        except RedisError as exc:  # the lease expires on its own after lease_ttl_s
            self._warn("could not release a concurrency lease", exc)

    def ping(self) -> None:
        self.redis.ping()

    def close(self) -> None:
        self.redis.close()

    def _unavailable(
        self, exc: RedisError, admission_id: str, scopes: tuple[Scope, ...], tokens: int
    ) -> Admission:
        if self.on_error == "refuse":
            raise LimiterUnavailable(
                "rate limits cannot be checked (Redis unreachable); try again shortly"
            ) from exc
        self._warn("admitting without rate limits", exc)
        return Admission(admission_id, scopes, tokens, enforced=False)

    def _warn(self, what: str, exc: RedisError) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            # The exception's type only: its text can carry the URL, and the URL can carry a password.
            log.warning("Redis for rate limits unavailable (%s): %s", type(exc).__name__, what)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _reason(raw: bytes | str) -> Reason:
    value = raw.decode() if isinstance(raw, bytes) else raw
    assert value in ("requests", "tokens", "concurrent", "too_large"), value
    return value  # type: ignore[return-value]
