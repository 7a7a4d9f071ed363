"""The Litestar application: routes, auth, errors, metrics, start-up and shutdown."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from functools import partial
from importlib import resources
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.params import JSONBody
from msgspec import Struct
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from assistant.alerts.webhook import Deliverer
from assistant.api.alert_routes import ALERT_ROUTES
from assistant.api.auth import (
    authorize_collection,
    ledger_of,
    principal_of,
    require_admin,
    require_api_key,
    require_profile,
)
from assistant.api.batch_routes import BATCH_ROUTES
from assistant.api.budget_metrics import register_budget_gauges
from assistant.api.chat import chat_completions, list_models
from assistant.api.dashboard_routes import DASHBOARD_ROUTES
from assistant.api.errors import EXCEPTION_HANDLERS, ApiError
from assistant.api.feedback_routes import FEEDBACK_ROUTES
from assistant.api.idempotency import idempotent
from assistant.api.ingest_routes import ingest_routes
from assistant.api.ledger_routes import LEDGER_ROUTES
from assistant.api.limit_routes import LIMIT_ROUTES
from assistant.api.limiting import limited, paid_token_estimate, with_rate_headers
from assistant.api.metrics import ServiceMetrics, metrics_middleware
from assistant.api.shedding import dismiss, in_thread, queue_ticket
from assistant.service import Penny
from assistant.settings import Settings

log = logging.getLogger("penny.api")

MAX_QUESTION_CHARS = 4000
MAX_BODY_BYTES = 1_000_000


class AskRequest(Struct, forbid_unknown_fields=True):
    question: str
    collection: str | None = None


@get("/healthz", sync_to_thread=False, include_in_schema=True)
def healthz() -> dict[str, str]:
    """The process is up (liveness)."""
    return {"status": "ok"}


@get("/readyz", sync_to_thread=True)
def readyz(state: State) -> Response[Any]:
    """Models loaded, index and ledger reachable (readiness)."""
    checks = state.penny.readiness()
    ok = all(value == "ok" for value in checks.values())
    return Response(
        {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
    )


@post("/v1/ask", status_code=200, guards=[require_api_key])
async def ask(data: JSONBody[AskRequest], request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """Penny's native API: answer, sources, tier, confidence, cost and latency."""
    question = data.question.strip()
    if not question:
        raise ApiError(400, "question must not be empty", param="question")
    if len(question) > MAX_QUESTION_CHARS:
        raise ApiError(413, f"question longer than {MAX_QUESTION_CHARS} characters", param="question")
    principal = principal_of(request)
    require_profile(principal, "penny")  # the native API runs the cascade
    charged, collection = await authorize_collection(request, data.collection)
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    estimate = paid_token_estimate(state.penny.settings, "cascade", question, [], None)
    ticket = queue_ticket(state, "cascade")  # 503 now if the local tier could not start it in time
    try:
        async with limited(request, state, estimate) as (admission, meter):

            async def produce() -> dict[str, Any]:
                meter.running()
                answer = await in_thread(
                    ticket,
                    lambda: state.penny.ask(question, collection, principal=charged, request_id=request_id),
                )
                meter.answered(answer)
                state.metrics.observe_answer(answer)
                usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}
                return {
                    "answer": answer.answer,
                    **answer.penny_block(),
                    "usage": usage,
                    "request_id": request_id,
                }

            response = await idempotent(request, ledger_of(request), principal, produce)
    finally:
        dismiss(state, ticket)
    return with_rate_headers(response, admission)


@get("/metrics", sync_to_thread=False, media_type="text/plain; version=0.0.4")
def metrics(state: State) -> Response[bytes]:
    """Prometheus exposition: service counters plus the worker pool's gauges."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@get("/", sync_to_thread=False, media_type=MediaType.HTML, include_in_schema=False)
def chat_page() -> str:
    """The web chat page: plain HTML and JS, no build step."""
    return resources.files("assistant").joinpath("data/web/index.html").read_text(encoding="utf-8")


@get("/v1/pool", guards=[require_admin], sync_to_thread=False)
def pool_status_route(state: State) -> dict[str, Any]:
    """The local tier's worker pool: queue, slots, memory, workers by state, recent scale events (admin)."""
    pool = state.penny.pool
    if pool is None:
        return {"enabled": False}
    from assistant.local.pool.metrics import pool_status

    return {"enabled": True, **pool_status(pool)}


def create_app(
    settings: Settings,
    penny: Penny | None = None,
    *,
    auth: bool = True,
    warm_up: bool = True,
) -> Litestar:
    """The HTTP app. ``auth=False`` is the explicit, loudly logged development mode (``--no-auth``)."""
    penny = penny or Penny(settings)
    service_metrics = ServiceMetrics(window=settings.cascade.shadow_window)
    stop_background = threading.Event()
    alerts = settings.alerts
    register_budget_gauges(
        service_metrics.registry,
        penny.ledger.budget_spend,
        top_n=alerts.gauge_top_n,
        refresh_s=alerts.gauge_refresh_s,
    )
    # Fails at start-up, not at the first alert, when a webhook URL has no secret.
    deliverer = Deliverer(penny.ledger, alerts) if alerts.webhook_url else None

    def start(app: Litestar) -> None:
        penny.ledger.recover_stale()
        penny.ingest_worker.start()  # fails jobs a previous process left unfinished
        _start_periodic_tasks(penny, stop_background)
        if deliverer is not None:
            threading.Thread(target=deliverer.run, args=(stop_background,), daemon=True).start()
        if penny.pool is not None:
            from assistant.local.pool.metrics import pool_registry

            pool_registry(penny.pool, service_metrics.registry)  # queue, slots, memory on /metrics
        shadow = penny.cascade.delivery.shadow
        if shadow is not None:
            service_metrics.watch_shadow(shadow)  # live precision estimate on /metrics
        penny.warn_calibration_mismatches()  # fitted for other models than these: said once, at start-up
        service_metrics.watch_calibrations(penny.calibration_mismatches)
        if warm_up:
            penny.warm_up()  # load models before the first request, so "ready" means ready

    def stop(app: Litestar) -> None:
        stop_background.set()
        if deliverer is not None:
            deliverer.close()
        penny.close()  # drains and stops pool workers

    if not auth:
        log.warning("AUTH DISABLED (--no-auth): every request acts as the system user. Never expose this.")

    return Litestar(
        route_handlers=[
            healthz,
            readyz,
            ask,
            chat_completions,
            list_models,
            metrics,
            chat_page,
            pool_status_route,
            *LEDGER_ROUTES,
            *DASHBOARD_ROUTES,
            *FEEDBACK_ROUTES,
            *LIMIT_ROUTES,
            *ALERT_ROUTES,
            *BATCH_ROUTES,
            *ingest_routes(settings),
        ],
        state=State({"penny": penny, "metrics": service_metrics, "auth": auth}),
        on_startup=[start],
        on_shutdown=[stop],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[metrics_middleware(service_metrics)],
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(title="Penny", version="0.1.0", path="/schema"),
    )


def _start_periodic_tasks(penny: Penny, stop: threading.Event) -> None:
    """The ledger's background work, each on its own thread until ``stop``: resolving reservations left by
    crashed requests; accruing each collection's storage (now, then once a UTC day: ``DailyAccrual``
    skips the other ticks); and, between requests, the spend anomalies no single spend change crosses."""
    from assistant.ledger.anomalies import AnomalyRules
    from assistant.storage import DailyAccrual

    every = penny.settings.ledger.recover_interval_s
    alerts = penny.settings.alerts
    rules = AnomalyRules.from_settings(alerts)
    tasks: list[tuple[str, float, Callable[[], object], bool]] = [
        ("ledger recovery", every, penny.ledger.recover_stale, False),
        ("storage accrual", every, DailyAccrual(penny.settings, penny.ledger).tick, True),
    ]
    if alerts.anomaly_interval_s > 0:
        check = partial(penny.ledger.check_spend_anomalies, rules)
        tasks.append(("spend anomaly check", alerts.anomaly_interval_s, check, False))
    for name, interval, task, now in tasks:
        args = (name, interval, task, now, stop)
        threading.Thread(target=_repeat, args=args, name=name, daemon=True).start()


def _repeat(
    name: str, interval_s: float, task: Callable[[], object], now: bool, stop: threading.Event
) -> None:
    """Run ``task`` every ``interval_s`` (first at once when ``now``) until ``stop``; a failure is logged
    and the task runs again next time."""
    if not now and stop.wait(interval_s):
        return
    while True:
        try:
            task()
        except Exception:
            log.exception("%s failed; will retry in %ss", name, interval_s)
        if stop.wait(interval_s):
            return
