"""The service says when its calibrations were fitted for other models: a start-up warning naming what
differs and what to do, and ``penny_calibration_mismatch`` on /metrics; nothing when they match."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from assistant.answering.prompt.grounded import PROMPT_VERSION
from assistant.calibration import Calibration, LocalModelId
from assistant.local.registry import REGISTRY
from assistant.service import Penny
from tests.support.fake_paid import FakePaid
from tests.support.servers import running_server

TINY = LocalModelId("smollm2-135m", REGISTRY["smollm2-135m"].sha256)  # the tests' local model


def gauges(base: str) -> dict[tuple[str, str], float]:
    """``penny_calibration_mismatch`` by (collection, field), as /metrics shows it."""
    found = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("penny_calibration_mismatch{"):
            labels, value = line.split("} ")
            pairs = dict(item.split("=") for item in labels.split("{", 1)[1].split(","))
            found[(pairs["collection"].strip('"'), pairs["field"].strip('"'))] = float(value)
    return found


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    said = [r for r in caplog.records if r.name == "penny.calibration" and r.levelno == logging.WARNING]
    return [r.getMessage() for r in said]


@pytest.fixture
def serve(settings, paid_server: tuple[FakePaid, str], caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    """Start the service with ``settings`` changed by the given paid model and cascade settings."""
    from assistant.api import create_app

    @contextmanager
    def start(paid_model: str, **cascade: object) -> Iterator[str]:
        changed = settings.model_copy(
            update={
                "paid": settings.paid.model_copy(update={"base_url": paid_server[1], "model": paid_model}),
                "cascade": settings.cascade.model_copy(update=cascade),
            }
        )
        app = create_app(changed, Penny(changed), warm_up=False)
        # Litestar's logging set-up replaces the root logger's handlers, caplog's among them.
        logger = logging.getLogger("penny.calibration")
        logger.addHandler(caplog.handler)
        try:
            with running_server(app) as base:
                yield base
        finally:
            logger.removeHandler(caplog.handler)

    return start


def test_other_local_and_paid_models_than_the_calibrations_are_warned_of_and_set_the_metric(
    serve, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    with serve("gpt-4o") as base:  # the shipped calibration: qwen2.5-0.5b and the stand-in qwen2.5-1.5b
        metric = gauges(base)
    said = warnings(caplog)
    local = next(m for m in said if "local_model:" in m)
    assert "the default calibration" in local and "fitted for qwen2.5-0.5b" in local
    assert "running smollm2-135m" in local and "penny calibrate --collection" in local
    paid = next(m for m in said if "paid_model:" in m)
    assert "fitted for qwen2.5-1.5b, running gpt-4o" in paid and "prior for gpt-4o, 0.798" in paid
    assert metric[("*", "local_model")] == 1.0 and metric[("*", "paid_model")] == 1.0
    assert metric[("*", "prompt_version")] == 0.0 and metric[("*", "stamp")] == 0.0


def test_matching_models_start_silent_and_a_collections_own_file_is_checked_too(
    serve, settings, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    shipped = Calibration.load()
    assert shipped.stamp is not None
    fitted_here = replace(shipped.stamp, local_model=TINY, answer_style="auto", prompt_version=PROMPT_VERSION)
    default = tmp_path / "default.json"
    replace(shipped, stamp=fitted_here).save(default)
    with serve("qwen2.5-1.5b", calibration_file=default, answer_style="auto") as base:
        assert all(value == 0.0 for value in gauges(base).values())
        assert {c for c, _ in gauges(base)} == {"*"}
        assert warnings(caplog) == []
        # A collection's own file, fitted in the concise style, is picked up by the next scrape.
        replace(shipped, stamp=replace(fitted_here, answer_style="concise")).save(
            settings.calibration_dir / "docs.json"
        )
        metric = gauges(base)
        assert metric[("docs", "answer_style")] == 1.0 and metric[("docs", "local_model")] == 0.0
        assert metric[("*", "answer_style")] == 0.0
