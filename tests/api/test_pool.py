"""The HTTP service with the local tier in worker processes: answers come from the pool, and the pool's
signals (queue, slots, memory) are on /metrics for an autoscaler and on the admin-only GET /v1/pool."""

from __future__ import annotations

import httpx
import openai
import pytest

from assistant.service import Penny
from tests.conftest import REPO
from tests.support.servers import running_server

ADMIN_KEY = "test-admin-key-0123456789"


def test_service_answers_through_the_pool_and_exports_its_signals(
    tmp_path, model_cache, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from assistant.api import create_app
    from assistant.settings import Settings

    monkeypatch.setenv("PENNY_ADMIN_KEY", ADMIN_KEY)
    settings = Settings(
        data_dir=tmp_path / "data",
        models={"local": "smollm2-135m", "cache_dir": model_cache, "n_ctx": 2048, "max_tokens": 24},
        pool={"enabled": True, "min_workers": 1, "max_workers": 1, "threads_per_worker": 1},
    )
    penny = Penny(settings)
    assert penny.ingester().ingest([REPO / "samples" / "normans.md"]).ok
    with running_server(create_app(settings, penny, auth=False), startup_timeout_s=180) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        response = client.chat.completions.create(
            model="penny-local", messages=[{"role": "user", "content": "Where is Normandy?"}]
        )
        assert response.choices[0].message.content
        assert response.usage is not None and response.usage.completion_tokens > 0
        with httpx.Client(base_url=base) as raw:
            metrics = raw.get("/metrics").text
            assert "penny_pool_slots_total 1.0" in metrics
            assert "penny_pool_queue_size" in metrics
            assert "penny_pool_memory_bytes" in metrics
            assert "penny_pool_service_seconds_count 1.0" in metrics  # the answer went through a worker
            assert raw.get("/v1/pool").status_code == 401  # admin only
            status = raw.get("/v1/pool", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()
            assert status["enabled"] is True
            assert raw.get("/readyz").json()["checks"]["local_model"] == "ok"
    assert all(not worker.alive for worker in penny.pool.workers())  # shutdown stopped the workers
