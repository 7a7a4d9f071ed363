"""Calibration: fit → save → load gives the same predictions; `eval calibrate` on a run's calls file.

The run here is generated data (records as the run loop writes them), so the statistics are known:
one feature carries the signal, the run's stored P(correct) is noise, and the paid tier is always right.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.answering.decision import Policy
from assistant.answering.judge.evaluator import Judgement
from assistant.answering.judge.features import FEATURES, OPTIONAL_FEATURES
from assistant.calibration import Calibration, fit
from assistant.settings import CascadeSettings
from eval.calibrate import calibrate
from eval.errors import RunError
from eval.paid_helps import fit_paid_helps
from eval.records import QuestionRecord, TierCall

POLICY = Policy.from_settings(CascadeSettings())


def _features(rng: random.Random, correct: bool) -> dict[str, float]:
    constant = {"answer_new_words": 3.0, "degenerate": 0.0}  # no signal, and no draw: the noise stays put
    row = {name: rng.gauss(0.0, 1.0) for name in FEATURES if name not in (*OPTIONAL_FEATURES, *constant)}
    row |= constant
    row["question_logprob"] = -2.0  # known, and no signal: the tests of optional features vary it
    row["lexical_support"] = (0.8 if correct else 0.3) + rng.gauss(0.0, 0.15)  # the informative one
    row["abstained"] = 0.0
    return row


def _record(
    i: int,
    *,
    answers: list[str],
    local: str,
    paid: str,
    p_correct: float,
    features: dict[str, float],
    prefix: str = "q",
) -> QuestionRecord:
    """Question ``i`` as the run loop records it: its own paragraph retrieved, both tiers asked."""
    return QuestionRecord(
        id=f"{prefix}{i}",
        question=f"question {i}?",
        answers=answers,
        context_id=f"ctx-{i}",
        retrieved_ids=[f"ctx-{i}"],
        retrieval_ms=5.0,
        local=TierCall(local, f"l{i}", "local", 20, 800.0),
        judgement=Judgement(p_correct=p_correct, features=features),
        paid=TierCall(paid, f"p{i}", "paid", 300, 1500.0),
        policy=POLICY,
    )


def _write_run(path: Path, records: list[QuestionRecord], dataset: str | None = None) -> None:
    """``calls.jsonl`` (and ``run.json`` when ``dataset`` is named) as `eval run` leaves them."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "calls.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
    if dataset is not None:
        meta = {"dataset": dataset, "paid_model": "p", "local_model": "l"}
        (path / "run.json").write_text(json.dumps(meta))


def synthetic_run(path: Path, n: int = 120, seed: int = 0) -> list[QuestionRecord]:
    """A calls.jsonl of ``n`` answerable questions; the local answer is right about 60 % of the time."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        correct = rng.random() < 0.6
        records.append(
            _record(
                i,
                answers=[f"answer {i}"],
                local=f"answer {i}" if correct else "something else",
                paid=f"answer {i} [1]",
                p_correct=rng.random(),
                features=_features(rng, correct),
            )
        )
    _write_run(path, records)
    return records


def test_fit_save_load_round_trip_gives_the_same_predictions(tmp_path: Path) -> None:
    rng = random.Random(1)
    labels = [rng.random() < 0.5 for _ in range(80)]
    rows = [_features(rng, label) for label in labels]
    model = fit(rows, labels)
    model.save(tmp_path / "calibration.json")
    loaded = Calibration.load(tmp_path / "calibration.json")
    assert [loaded.probability(r) for r in rows] == [model.probability(r) for r in rows]
    assert loaded.features == list(FEATURES)


def test_calibrate_refits_beats_the_noise_it_replaces_and_picks_a_cheaper_threshold(tmp_path: Path) -> None:
    run = tmp_path / "run"
    records = synthetic_run(run)
    # The results path resolves to its run directory. Escalating the 40 % wrong answers (and the right ones
    # the evaluator is unsure of) costs over half of paid-only: no cap here, only "cheaper than paid".
    outcome = calibrate(run / "results.jsonl", seed=0, cost_cap=1.0)

    assert outcome.path == run / "calibration.json"
    loaded = Calibration.load(outcome.path)
    # The file is the model fitted on the whole run: re-fitting the same rows gives the same predictions.
    rows = [r.judgement.features for r in records if r.judgement]
    labels = [r.local is not None and r.local.answer == r.answers[0] for r in records]
    refit = fit(rows, labels, regularization_c=loaded.meta["C"])  # C was chosen by cross-validation
    assert [loaded.probability(x) for x in rows] == pytest.approx([refit.probability(x) for x in rows])
    assert loaded.meta["recommended_wrong_answer_usd"] == outcome.chosen.config.wrong_answer_usd  # type: ignore[union-attr]

    # The stored P(correct) was noise, the refit sees the signal: held-out AUROC goes up.
    assert outcome.n_test == 36 and outcome.n_train == 84  # 30 % of 120 held out
    assert outcome.auroc_before is not None and outcome.auroc_before < 0.7
    assert outcome.auroc_after is not None and outcome.auroc_after > 0.85

    # Paid-only F1 is 100 here; the chosen price stays within 1 point of it and costs less.
    assert outcome.paid_f1 == pytest.approx(100.0)
    assert outcome.chosen is not None
    assert outcome.chosen.quality.f1 >= 99.0
    assert outcome.chosen.mean_cost_micro_usd < outcome.paid_mean_cost_micro_usd  # type: ignore[operator]
    lines = "\n".join(outcome.lines())
    assert "PENNY_CASCADE__WRONG_ANSWER_USD=" in lines and "before" in lines and "after" in lines
    # The paid tier is always right here: every escalation helps.
    assert outcome.chosen.wasted_escalation_share in (None, 0.0)


def test_calibrate_cli_prints_auroc_and_the_price(tmp_path: Path) -> None:
    from eval.cli import eval_group

    run = tmp_path / "run"
    synthetic_run(run, seed=2)
    target = tmp_path / "my-calibration.json"
    result = CliRunner().invoke(eval_group, ["calibrate", str(run), "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert "AUROC" in result.output and "wrong answer $" in result.output
    assert json.loads(target.read_text())["features"] == list(FEATURES)


def test_calibrate_refuses_too_little_data_and_missing_runs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    synthetic_run(run, n=6)
    with pytest.raises(RunError, match="at least 10 questions"):
        calibrate(run)
    assert not (run / "calibration.json").exists()  # nothing half-written
    with pytest.raises(RunError, match="not found"):
        calibrate(tmp_path / "empty")


def test_calibrate_fits_all_three_decisions_when_half_the_questions_have_no_answer(tmp_path: Path) -> None:
    """SQuAD 2.0-like: half the questions are unanswerable, neither tier ever abstains, and one feature
    (question_support) tells answerable from not. P(answerable) and P(paid helps) must both learn it: the
    paid tier is right exactly on the answerable questions, so paying for an unanswerable one is waste."""
    rng = random.Random(3)
    records = []
    for i in range(160):
        has_answer = i % 2 == 0
        correct = has_answer and rng.random() < 0.7
        features = _features(rng, correct)
        features["question_support"] = (0.9 if has_answer else 0.4) + rng.gauss(0.0, 0.08)
        records.append(
            _record(
                i,
                answers=[f"answer {i}"] if has_answer else [],
                local=f"answer {i}" if correct else "something else",
                paid=f"answer {i}" if has_answer else "a guess",
                p_correct=rng.random(),
                features=features,
            )
        )
    run = tmp_path / "run"
    _write_run(run, records, "synthetic")

    outcome = calibrate(run, seed=0, cost_cap=0.6)

    assert outcome.gate_auroc is not None and outcome.gate_auroc > 0.95
    loaded = Calibration.load(outcome.path)
    assert loaded.answerable is not None and loaded.paid_helps is not None
    decisions = {d.name: d for d in outcome.decisions}
    assert set(decisions) == {"local_correct", "answerable", "paid_helps"}
    assert decisions["paid_helps"].auroc is not None and decisions["paid_helps"].auroc > 0.9
    local_wrong = [r for r in records if not r.answers or (r.local and r.local.answer != r.answers[0])]
    assert decisions["paid_helps"].n == len(local_wrong)  # scored only where the local answer was wrong
    # Right on every answerable question it was asked, on no unanswerable one: a rate near 1 for the
    # first (no features to fit on a single outcome) and near 0 for the second.
    assert (
        loaded.paid_helps.meta.get("constant") is True
        and loaded.paid_helps.probability(records[0].judgement.features) > 0.9
    )  # type: ignore[union-attr]
    assert loaded.paid_helps_unanswerable is not None and loaded.paid_helps_unanswerable < 0.05
    assert outcome.chosen is not None
    # Paid-only never abstains: NoAns F1 0, overall 50. Gating unanswerable questions beats it by far.
    assert outcome.paid_f1 == pytest.approx(50.0)
    assert outcome.chosen.quality.no_ans_f1 is not None and outcome.chosen.quality.no_ans_f1 > 90.0
    assert outcome.chosen.wasted_escalation_share is not None and outcome.chosen.wasted_escalation_share < 0.2
    assert outcome.report is not None and outcome.report.exists()
    assert (run / "calibrated-frontier.png").exists()
    assert "out-of-fold" in outcome.report.read_text()


def test_features_added_after_a_run_are_refused_then_refreshed_from_the_stored_answers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """A run recorded before a feature existed: calibrate names the fix; --refresh-features recomputes it
    on the passages the same (real) retrieval returns, keeping the features computed live."""
    from assistant.service import Penny
    from assistant.settings import get_settings
    from eval.datasets import ingest_contexts, load_dataset
    from eval.labelled_runs import refresh_features
    from index.store import get_collection

    monkeypatch.setenv("PENNY_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        dataset = load_dataset(Path(__file__).parents[1] / "data" / "squad2-mini.json")
        penny = Penny(get_settings())
        ingest_contexts(dataset, get_collection(penny.chroma, dataset.collection_name), penny.embedder)
        question = dataset.questions[0]
        passages = penny.retriever(dataset.collection_name).search(question.question)
        stored = {"mean_logprob": -0.42, "retrieval_top": 0.61}  # as the service computed them live
        old = QuestionRecord(
            id=question.id,
            question=question.question,
            answers=question.answers,
            context_id=None,
            retrieved_ids=[p.id for p in passages],
            retrieval_ms=5.0,
            local=TierCall(f"{question.answers[0]} [1]", "l", "local", 20, 800.0),
            judgement=Judgement(p_correct=0.5, features=dict(stored)),
            policy=POLICY,
        )
        (fresh,) = refresh_features([old], dataset.collection_name)
        # Ranked otherwise today: the recorded passages are read back by id, in the recorded order.
        moved = replace(old, retrieved_ids=list(reversed(old.retrieved_ids)))
        (reread,) = refresh_features([moved], dataset.collection_name)
        gone = replace(old, retrieved_ids=["ctx-deleted", *old.retrieved_ids[1:]])
        with pytest.raises(RunError, match="recorded passages are no longer in the collection"):
            refresh_features([gone], dataset.collection_name)
    finally:
        get_settings.cache_clear()
    assert reread.judgement is not None and reread.judgement.features["n_citations"] == 1
    assert fresh.judgement is not None and set(fresh.judgement.features) == set(FEATURES) - {
        "min_logprob",
        "retrieval_margin",
        "answer_tokens",
        "dense_bm25_agree",
        "question_logprob",
    }  # only text features can be recomputed; the generation's and retrieval's stay as recorded
    assert fresh.judgement.features["mean_logprob"] == -0.42
    assert fresh.judgement.features["answer_verbatim_rank"] > 0  # the gold answer is in its paragraph

    run = tmp_path / "run"
    synthetic_run(run)
    lines = (run / "calls.jsonl").read_text().splitlines()
    for i, line in enumerate(lines[:3]):
        data = json.loads(line)
        del data["judgement"]["features"]["type_match"]
        lines[i] = json.dumps(data)
    (run / "calls.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match=r"lack features type_match.*--refresh-features"):
        calibrate(run)


def _gate_run(path: Path, seed: int, support_sign: float, lacking: tuple[str, ...] = ()) -> None:
    """Half answerable; ``retrieval_top`` says so in the same direction everywhere, ``question_support``
    in the direction ``support_sign`` (SQuAD 2.0's quirk is -1: its unanswerable questions copy words)."""
    rng = random.Random(seed)
    records = []
    for i in range(120):
        has_answer = i % 2 == 0
        features = _features(rng, has_answer)
        features["retrieval_top"] = (0.7 if has_answer else 0.5) + rng.gauss(0.0, 0.1)
        features["question_support"] = 0.6 + support_sign * (0.2 if has_answer else -0.2) + rng.gauss(0, 0.1)
        for name in lacking:  # what a backend that cannot give it leaves out
            del features[name]
        records.append(
            _record(
                i,
                answers=[f"answer {i}"] if has_answer else [],
                local=f"answer {i}" if has_answer else "a guess",
                paid=f"answer {i}",
                p_correct=rng.random(),
                features=features,
                prefix=f"{path.name}-q",
            )
        )
    _write_run(path, records, path.name)


def test_two_distributions_drop_the_feature_whose_sign_flips_and_report_auroc_per_run(tmp_path: Path) -> None:
    _gate_run(tmp_path / "squad", seed=1, support_sign=-1.0)
    _gate_run(tmp_path / "docs", seed=2, support_sign=+1.0)

    outcome = calibrate([tmp_path / "squad", tmp_path / "docs"], seed=0, cost_cap=0.6)

    gate = next(d for d in outcome.decisions if d.name == "answerable")
    assert [f.feature for f in gate.sign_flips] == ["question_support"]
    flip = gate.sign_flips[0].coef
    assert flip["squad"] < 0 < flip["docs"]
    assert "question_support" not in gate.features and "retrieval_top" in gate.features
    assert set(gate.auroc_by_distribution) == {"squad", "docs"}
    assert all(v is not None and v > 0.8 for v in gate.auroc_by_distribution.values())
    loaded = Calibration.load(outcome.path)
    assert loaded.answerable is not None and "question_support" not in loaded.answerable.features
    assert outcome.path.parent == tmp_path / "squad"  # outputs go to the first run
    text = "\n".join(outcome.lines())
    assert "per distribution: docs" in text and "question_support (docs +" in text
    local = next(d for d in outcome.decisions if d.name == "local_correct")
    assert set(local.auroc_has_ans_by_distribution) == {"squad", "docs"}  # the answerable questions alone
    assert "HasAns only: docs" in text
    assert set(loaded.meta["local_correct_has_ans_auroc_by_distribution"]) == {"squad", "docs"}


def test_runs_on_a_backend_that_cannot_score_the_question_fit_without_it(tmp_path: Path) -> None:
    """llama-server or vLLM as the local tier: no question log-probability in any record of that run."""
    _gate_run(tmp_path / "server", seed=3, support_sign=+1.0, lacking=("question_logprob",))
    alone = Calibration.load(calibrate([tmp_path / "server"], seed=0, cost_cap=0.6).path)
    fitted = [
        alone,
        alone.answerable,
    ]  # (P(paid helps) is a constant rate here: the paid tier is always right)
    assert all(m is not None and "question_logprob" not in m.features for m in fitted)

    _gate_run(tmp_path / "docs", seed=2, support_sign=+1.0)  # Penny's worker: every record has it
    out = tmp_path / "both.json"
    pooled = Calibration.load(calibrate([tmp_path / "docs", tmp_path / "server"], out=out, seed=0).path)
    assert "question_logprob" in pooled.features  # fitted where known, read at its mean where not
    assert pooled.means[pooled.features.index("question_logprob")] == pytest.approx(-2.0)  # docs' value


def test_excluded_features_are_read_by_no_model(tmp_path: Path) -> None:
    _gate_run(tmp_path / "docs", seed=2, support_sign=+1.0)
    outcome = calibrate(
        [tmp_path / "docs"], seed=0, cost_cap=0.6, exclude=("question_logprob", "retrieval_top")
    )
    loaded = Calibration.load(outcome.path)
    assert loaded.answerable is not None
    for model in (loaded, loaded.answerable, loaded.paid_helps or loaded):
        assert not {"question_logprob", "retrieval_top"} & set(model.features)
    assert "lexical_support" in loaded.features
    with pytest.raises(RunError, match="unknown features no_such"):
        calibrate([tmp_path / "docs"], seed=0, exclude=("no_such",))


def test_a_fit_can_keep_to_the_features_another_calibration_reads(tmp_path: Path) -> None:
    """A collection's synthetic questions are one distribution: its fit reads what the default kept."""
    _gate_run(tmp_path / "docs", seed=2, support_sign=+1.0)
    kept = ["retrieval_top", "question_sentence_cos"]
    default = fit(
        [_features(random.Random(i), i % 2 == 0) for i in range(40)], [i % 2 == 0 for i in range(40)]
    )
    default.answerable = fit(
        [_features(random.Random(i), i % 2 == 0) for i in range(40)],
        [i % 2 == 0 for i in range(40)],
        names=kept,
    )

    outcome = calibrate(tmp_path / "docs", seed=0, cost_cap=0.6, features_of=default)

    loaded = Calibration.load(outcome.path)
    assert loaded.answerable is not None and loaded.answerable.features == kept
    assert loaded.features == list(FEATURES)


def test_two_runs_in_folders_of_the_same_name_stay_two_distributions(tmp_path: Path) -> None:
    """`penny calibrate` leaves every collection's run in a folder named `run`."""
    _gate_run(tmp_path / "squad" / "run", seed=1, support_sign=-1.0)
    _gate_run(tmp_path / "docs" / "run", seed=2, support_sign=+1.0)

    outcome = calibrate([tmp_path / "squad" / "run", tmp_path / "docs" / "run"], seed=0, cost_cap=0.6)

    gate = next(d for d in outcome.decisions if d.name == "answerable")
    assert set(gate.auroc_by_distribution) == {
        str(tmp_path / "squad" / "run"),
        str(tmp_path / "docs" / "run"),
    }
    assert [f.feature for f in gate.sign_flips] == ["question_support"]


def test_paid_helps_is_fitted_on_answerable_questions_and_mixed_with_the_unanswerable_rate() -> None:
    """The paid tier is right on the answerable questions whose retrieval agrees (dense_bm25_agree) and
    abstains on 1 unanswerable question in 10: the model learns the first, the rate holds the second, and
    a wrong answer to an answerable-looking question is worth paying for more than one that is not."""
    rng = random.Random(5)
    n = 240
    has_answer = [i % 2 == 0 for i in range(n)]
    local_correct = [h and rng.random() < 0.3 for h in has_answer]
    features = [{**_features(rng, c), "dense_bm25_agree": float(rng.random() < 0.5)} for c in local_correct]
    paid_right: list[bool | None] = [
        (f["dense_bm25_agree"] == 1.0) if h else rng.random() < 0.1
        for f, h in zip(features, has_answer, strict=True)
    ]
    p_correct = [0.6 if c else 0.2 for c in local_correct]
    p_answerable = [0.9 if h else 0.2 for h in has_answer]
    fitted = fit_paid_helps(
        features,
        local_correct,
        has_answer,
        paid_right,
        p_correct,
        p_answerable,
        [False] * n,
        folds=5,
        seed=0,
        regularization_c=1.0,
        names=["dense_bm25_agree", "retrieval_top"],
    )
    assert fitted is not None
    wrong = [i for i in range(n) if not local_correct[i]]
    assert fitted.summary.n == len(wrong)
    assert set(fitted.fitted_on) == {i for i in wrong if has_answer[i]}
    assert fitted.unanswerable_rate is not None and 0.0 < fitted.unanswerable_rate < 0.25
    # Below 1 by design: the unanswerable questions the paid tier gets right are a coin nothing predicts.
    assert fitted.summary.auroc is not None and fitted.summary.auroc > 0.8
    agree = {**features[0], "dense_bm25_agree": 1.0}
    disagree = {**features[0], "dense_bm25_agree": 0.0}
    assert fitted.model.probability(agree) > 0.8 > 0.2 > fitted.model.probability(disagree)
    # Out of fold, the mixture pays for an answerable-looking wrong answer, not an unanswerable-looking one.
    answerable_wrong = [fitted.oof[i] for i in wrong if has_answer[i] and paid_right[i]]
    unanswerable_wrong = [fitted.oof[i] for i in wrong if not has_answer[i]]
    assert min(answerable_wrong) > max(unanswerable_wrong)


def test_a_fit_is_stamped_with_what_its_runs_were_answered_with(tmp_path: Path) -> None:
    from assistant.calibration import LocalModelId
    from assistant.local.registry import REGISTRY

    for name, seed, date in (("real", 1, "2026-11-30"), ("synthetic", 2, "2026-12-01")):
        _gate_run(tmp_path / name, seed=seed, support_sign=+1.0)
        meta = json.loads((tmp_path / name / "run.json").read_text())
        meta |= {"local_model": "qwen2.5-0.5b", "paid_model": "gpt-4o", "answer_style": "concise"}
        meta |= {"prompt_version": 1, "date": date}  # a run before them said nothing of the sha256
        (tmp_path / name / "run.json").write_text(json.dumps(meta))
    runs = [tmp_path / "real", tmp_path / "synthetic"]
    stamp = Calibration.load(calibrate(runs, seed=0, cost_cap=0.6, trees=False).path).stamp
    assert stamp is not None
    assert stamp.local_model == LocalModelId("qwen2.5-0.5b", REGISTRY["qwen2.5-0.5b"].sha256)
    assert (stamp.paid_model, stamp.answer_style, stamp.prompt_version) == ("gpt-4o", "concise", 1)
    assert [(d.run, d.questions) for d in stamp.data] == [("real", 120), ("synthetic", 120)]
    assert stamp.date == "2026-12-01"  # the newest data's: the same runs make the same stamp
    assert stamp.source.startswith("python -m eval calibrate")
    meta = json.loads((tmp_path / "synthetic" / "run.json").read_text())
    (tmp_path / "synthetic" / "run.json").write_text(json.dumps(meta | {"local_model": "/models/mine.gguf"}))
    with pytest.raises(RunError, match=r"different local models: qwen2\.5-0\.5b \(real\), /models/mine"):
        calibrate(runs, seed=0, cost_cap=0.6, trees=False)
