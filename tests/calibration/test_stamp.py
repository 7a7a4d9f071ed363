"""A calibration's stamp: what it was fitted for, kept in the file, compared with what is running; and
P(paid helps) from the fit only for the paid model it was fitted on, else from the price table's prior."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.answering.prompt.grounded import PROMPT_VERSION
from assistant.calibration import (
    Calibration,
    LocalModelId,
    PaidModel,
    Running,
    Stamp,
    mismatches,
)
from assistant.ledger import PriceTable
from assistant.local.registry import REGISTRY, ModelError, ModelRegistry
from tests.conftest import REPO

SHIPPED_LOCAL = LocalModelId("qwen2.5-0.5b", REGISTRY["qwen2.5-0.5b"].sha256)
PRICES = PriceTable.load()


def matching(stamp: Stamp) -> Running:
    """The settings the stamp was fitted for, with the stand-in paid tier configured."""
    assert stamp.local_model is not None and stamp.answer_style is not None
    return Running(
        stamp.local_model,
        PaidModel.from_prices(str(stamp.paid_model), PRICES),
        stamp.answer_style,
        PROMPT_VERSION,
    )


def test_the_shipped_calibration_says_what_it_was_fitted_for() -> None:
    stamp = Calibration.load().stamp
    assert stamp is not None
    assert stamp.local_model == SHIPPED_LOCAL
    assert stamp.paid_model == "qwen2.5-1.5b"
    assert (stamp.answer_style, stamp.prompt_version) == ("concise", PROMPT_VERSION)
    assert [(d.run, d.questions) for d in stamp.data] == [("squad-real", 240), ("pydoc-synthetic", 120)]
    assert stamp.date == "2026-12-04"
    assert "question_names_missing" in stamp.features and "question_logprob" not in stamp.features
    assert "penny calibrate --default" in stamp.source


def test_the_stamp_survives_save_and_load_and_a_format_3_file_still_loads(tmp_path: Path) -> None:
    shipped = Calibration.load()
    path = tmp_path / "c.json"
    shipped.save(path)
    assert Calibration.load(path).stamp == shipped.stamp
    written = json.loads(path.read_text())
    assert written["stamp"]["local_model"]["sha256"] == SHIPPED_LOCAL.sha256
    assert "stamp" not in written["answerable"]  # one stamp per file
    old = Calibration.load(REPO / "docs/eval/default-calibration/fit-2026-12-05.json")  # format 3
    assert old.stamp is None and old.paid_helps is not None
    assert [m.field for m in mismatches(old.stamp, matching(shipped.stamp))] == ["stamp"]


def test_mismatches_name_each_difference_and_what_to_do() -> None:
    stamp = Calibration.load().stamp
    assert stamp is not None
    now = matching(stamp)
    assert mismatches(stamp, now) == []
    # A renamed copy of the same file is the same model: compared by sha256.
    copy = LocalModelId("/models/copy.gguf", SHIPPED_LOCAL.sha256)
    assert mismatches(stamp, replace(now, local_model=copy)) == []
    other = replace(
        now,
        local_model=LocalModelId("smollm2-135m", REGISTRY["smollm2-135m"].sha256),
        paid=PaidModel.from_prices("gpt-4o-2024-08-06", PRICES),  # an alias: named as the price table does
        answer_style="auto",
        prompt_version=PROMPT_VERSION + 1,
    )
    found = {m.field: m for m in mismatches(stamp, other, "docs")}
    assert set(found) == {"local_model", "paid_model", "answer_style", "prompt_version"}
    assert "running smollm2-135m" in found["local_model"].line()
    assert "`penny calibrate --collection docs`" in found["local_model"].fix
    assert found["paid_model"].running == "gpt-4o"
    assert "prior for gpt-4o, 0.798" in found["paid_model"].fix
    assert 'cascade.answer_style = "concise"' in found["answer_style"].fix
    # No paid tier: nothing to compare P(paid helps) with.
    assert mismatches(stamp, replace(now, paid=None)) == []


def test_paid_helps_is_the_fit_for_its_own_paid_model_and_the_prior_for_another() -> None:
    calibration = Calibration.load()
    assert calibration.paid_helps is not None
    row = {name: 0.5 for name in calibration.features_read()}
    fitted = calibration.p_paid_helps(row)
    stand_in = PaidModel.from_prices("Qwen2.5-Coder-1.5B-Instruct", PRICES)  # the stamp's, by an alias
    assert calibration.paid_helps_for(row, stand_in) == (fitted, "fitted for qwen2.5-1.5b")
    assert calibration.paid_helps_for(row, None) == (fitted, "fitted for qwen2.5-1.5b")  # no paid tier known
    value, source = calibration.paid_helps_for(row, PaidModel.from_prices("gpt-4o", PRICES))
    assert value == 0.798 and source.startswith("prior for gpt-4o: DROP F1 79.8")
    # A model without a prior keeps the other model's fit, and says so.
    value, source = calibration.paid_helps_for(row, PaidModel("my-model"))
    assert value == fitted and source == "fitted for qwen2.5-1.5b, not my-model (no prior)"
    # Labels for this paid model (a collection fitted on its answers): the fit wins over the prior.
    assert calibration.stamp is not None
    own = replace(calibration, stamp=replace(calibration.stamp, paid_model="gpt-4o"))
    assert own.paid_helps_for(row, PaidModel.from_prices("gpt-4o", PRICES)) == (fitted, "fitted for gpt-4o")
    # Neither a fit nor a prior: the decision reads P(answerable) instead.
    bare = replace(calibration, paid_helps=None)
    assert bare.paid_helps_for(row, PaidModel("my-model")) == (None, "not modelled: P(answerable)")


def test_a_users_own_model_file_is_hashed_once_and_again_when_it_changes(tmp_path: Path) -> None:
    import hashlib

    model = tmp_path / "mine.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 4096)
    registry = ModelRegistry(tmp_path / "cache")
    assert registry.sha256(str(model)) == hashlib.sha256(model.read_bytes()).hexdigest()
    (marker,) = (tmp_path / "cache" / "hashes").iterdir()
    recorded = json.loads(marker.read_text())
    marker.write_text(json.dumps({**recorded, "sha256": "cached"}))
    assert registry.sha256(str(model)) == "cached"  # read back, not hashed again
    model.write_bytes(b"GGUF" + b"\1" * 4096)  # another size and mtime: hashed again
    assert registry.sha256(str(model)) == hashlib.sha256(model.read_bytes()).hexdigest()
    assert registry.sha256("qwen2.5-0.5b") == SHIPPED_LOCAL.sha256  # a registry model's is known
    (tmp_path / "bad.gguf").write_bytes(b"nope")
    with pytest.raises(ModelError, match="not a GGUF"):
        registry.sha256(str(tmp_path / "bad.gguf"))
