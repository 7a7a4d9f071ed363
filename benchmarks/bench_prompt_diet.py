"""The prompt diet (``assistant/answering/prompt/compression.py``): what each setting saves, and what it
costs.

On a SQuAD 2.0 file (default: the shared 626-question sample), each question's contexts indexed whole as
eval does, hybrid retrieval top 3 once per question, the local tier only:

1. Every question, every setting, no generation: the local prompt's tokens (the local model's own chat
   template and tokenizer) and answer recall, the share of answerable questions whose gold answer still
   occurs in the prompt's sources (the uncompressed prompt is the ceiling).
2. ``--limit`` questions (stratified, ``--seed``), the ``--generate`` settings answered in turn per question,
   the order rotating so machine load and llama.cpp's prompt cache favour none (the cache is also cleared
   before every answer): local HasAns F1, NoAns F1 (= abstention rate on NoAns), local seconds per answer
   (generation; and the whole local answer, diet and evaluator included), and the ledger's local cost.
   Per-answer rows go to ``--out`` (JSONL); a rerun with the same file resumes.

Usage: python benchmarks/bench_prompt_diet.py [--limit 300] [--generate off,default] [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from assistant.answering.prompt.compression import Diet, compress  # noqa: E402
from assistant.answering.prompt.grounded import grounded_messages  # noqa: E402
from assistant.answering.text import sentences  # noqa: E402
from assistant.settings import CascadeSettings, Settings  # noqa: E402
from eval.metrics import normalize_answer, score, to_prediction  # noqa: E402

DEFAULT = Diet.from_settings(CascadeSettings(prompt_diet=True))
# The settings tried: name -> diet (None: today's whole passages).
SETTINGS: dict[str, Diet | None] = {
    "off": None,
    "default": DEFAULT,
    "lean": replace(DEFAULT, budget_tokens=250, keep_within=0.3, neighbours=1),
    "b200": replace(DEFAULT, budget_tokens=200),
    "b250": replace(DEFAULT, budget_tokens=250),
    "b400": replace(DEFAULT, budget_tokens=400),
    "within0.3": replace(DEFAULT, keep_within=0.3),
    "within0.4": replace(DEFAULT, keep_within=0.4),
    "within0.7": replace(DEFAULT, keep_within=0.7),
    "neighbours0": replace(DEFAULT, neighbours=0),
    "neighbours1": replace(DEFAULT, neighbours=1),
    "neighbours3": replace(DEFAULT, neighbours=3),
    "lexical0": replace(DEFAULT, lexical_weight=0.0),
    "lexical0.5": replace(DEFAULT, lexical_weight=0.5),
    "lexical1.5": replace(DEFAULT, lexical_weight=1.5),
}


def prompt_counter(model_path: Path):  # type: ignore[no-untyped-def]
    """Counts a chat prompt's tokens as the local model sees them: its GGUF chat template, its tokenizer."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    vocab = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    template = vocab.metadata["tokenizer.chat_template"]
    eos = vocab._model.token_get_text(vocab.token_eos())
    bos = vocab._model.token_get_text(vocab.token_bos()) if vocab.token_bos() >= 0 else ""
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def count(messages: list[dict[str, str]]) -> int:
        prompt = formatter(messages=messages).prompt
        return len(vocab.tokenize(prompt.encode(), add_bos=True, special=True))

    return count


def sources_text(messages: list[dict[str, str]]) -> str:
    return normalize_answer(messages[-1]["content"].split("\n\nQuestion: ")[0])


def recalled(answers: tuple[str, ...], text: str) -> bool:
    return any(f" {normalize_answer(a)} " in f" {text} " for a in answers if normalize_answer(a))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def bootstrap_ci(diffs: list[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds)]


def main() -> None:
    logging.disable(logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        type=Path,
        default=REPO.parent / "shared" / "data" / "squad2-dev-sample.json",
        help="SQuAD 2.0 JSON (default: the shared sample next to the repo, else the tests' mini file).",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="Index and ledger (default: a temp dir).")
    parser.add_argument("--models-dir", type=Path, default=REPO / ".penny" / "models")
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--limit", type=int, default=0, help="Questions answered (0: skip generation).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generate", default="off,default", help="Settings answered, comma-separated.")
    parser.add_argument("--out", type=Path, default=None, help="Per-answer JSONL (resumed when present).")
    args = parser.parse_args()
    if not args.dataset.is_file():
        print(f"{args.dataset} not found: using the tests' mini file")
        args.dataset = REPO / "tests" / "data" / "squad2-mini.json"

    from assistant.service import Penny
    from eval.datasets import ingest_contexts, load_dataset
    from index.store import get_collection

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="penny-bench-diet-"))
    settings = Settings(
        data_dir=data_dir,
        models={"local": args.model, "cache_dir": args.models_dir, "max_tokens": 48},
        cascade={"prompt_diet": False},
    )
    penny = Penny(settings)
    dataset = load_dataset(args.dataset)
    collection = dataset.collection_name
    ingest_contexts(dataset, get_collection(penny.chroma, collection), penny.embedder)
    retriever = penny.retriever(collection)
    count = prompt_counter(penny.registry.path(args.model))
    has, no = dataset.counts()
    print(
        f"{args.dataset.name}: {len(dataset.questions)} questions ({has} HasAns, {no} NoAns), "
        f"model {args.model}, hybrid top {settings.index.top_k}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )

    # 1. Tokens and recall: every question, every setting, no generation.
    started = time.perf_counter()
    saved = data_dir / f"prompt-diet-{dataset.name}.pickle"  # retrieval and vectors: reruns skip them
    embedder = penny.embedder
    if saved.exists():
        retrieved, memo = pickle.loads(saved.read_bytes())
    else:
        retrieved = {q.id: retriever.search(q.question) for q in dataset.questions}
        memo = {}
        for q in dataset.questions:
            texts = [q.question, *(s for p in retrieved[q.id] for s in sentences(p.text))]
            memo.update(zip(texts, embedder.embed_memo(texts), strict=True))
        saved.write_bytes(pickle.dumps((retrieved, memo)))
    # Every setting reads the vectors from the embedder's memo, as the cascade's diet does.
    embedder.memo_size = max(embedder.memo_size, 2 * len(memo))
    embedder.remember(list(memo), list(memo.values()))
    print(f"retrieval and sentence embedding: {time.perf_counter() - started:.0f} s")
    style = settings.cascade.answer_style
    full_tokens: dict[str, int] = {}
    print(f"\n[prompt tokens and answer recall: all {len(dataset.questions)} questions, {has} answerable]")
    print(
        f"{'setting':<12} {'tokens p10':>10} {'p50':>5} {'p90':>5} {'mean':>7} {'vs off':>7} {'recall':>7} "
        f"{'kept':>7} {'ms p50':>6}  diet"
    )
    full_recall: set[str] = set()
    for name, diet in SETTINGS.items():
        tokens: list[int] = []
        hits: set[str] = set()
        seconds: list[float] = []
        for q in dataset.questions:
            started = time.perf_counter()
            passages = compress(q.question, retrieved[q.id], embedder, diet)
            seconds.append(time.perf_counter() - started)
            messages = grounded_messages(q.question, passages, style)
            n = count(messages)
            tokens.append(n)
            if diet is None:
                full_tokens[q.id] = n
            if q.has_answer and recalled(q.answers, sources_text(messages)):
                hits.add(q.id)
        if diet is None:
            full_recall = hits
        saved = 1 - sum(tokens) / sum(full_tokens.values())
        kept = len(hits & full_recall) / len(full_recall) if full_recall else float("nan")
        deciles = statistics.quantiles(tokens, n=10)
        print(
            f"{name:<12} {deciles[0]:>10.0f} {median(tokens):>5.0f} {deciles[-1]:>5.0f} {mean(tokens):>7.1f} "
            f"{-saved:>+7.1%} {len(hits) / has:>7.1%} {kept:>7.1%} {1000 * median(seconds):>6.2f}  {diet}"
        )

    if args.limit <= 0:
        return
    generate(args, settings, penny, dataset, collection, retrieved, count)


def generate(args, settings, penny, dataset, collection, retrieved, count) -> None:  # type: ignore[no-untyped-def]
    """Phase 2: local answers for each ``--generate`` setting on the same questions, interleaved."""
    from assistant.answering.factory import build_cascade
    from assistant.ledger import open_ledger

    names = [n.strip() for n in args.generate.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; choose from {', '.join(SETTINGS)}")
    questions = dataset.sample(args.limit, args.seed).questions
    ledger = open_ledger(settings, paid_models=())
    local = penny.local_model
    cascades = {}
    for name in names:
        cascade = build_cascade(
            settings,
            retriever=penny.retriever,
            local=local,
            ledger=ledger,
            embedder=penny.embedder,
            paid=None,
        )
        cascade.prompt_builder.diet = SETTINGS[name]
        cascades[name] = cascade
    out = args.out or Path(settings.data_dir) / "prompt-diet-answers.jsonl"
    done: dict[tuple[str, str], dict] = {}
    if out.exists():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done[(row["id"], row["setting"])] = row
    penny.warm_up()
    started = time.perf_counter()
    with out.open("a") as handle:
        for i, q in enumerate(questions):
            for j in range(len(names)):
                name = names[(i + j) % len(names)]
                if (q.id, name) in done:
                    continue
                local.forget_prompt_cache()
                answer = cascades[name].answer(
                    q.question,
                    collection=collection,
                    mode="local",
                    passages=retrieved[q.id],
                    route_before_generation=False,
                )
                generation = answer.local_generation
                assert generation is not None
                prediction = to_prediction(answer.answer)
                _em, f1 = score(prediction, q.answers)
                row = {
                    "id": q.id,
                    "setting": name,
                    "has_answer": q.has_answer,
                    "answer": answer.answer,
                    "f1": f1,
                    "abstained": prediction == "",
                    "prompt_tokens": generation.prompt_tokens,
                    "completion_tokens": generation.completion_tokens,
                    "seconds": generation.seconds,
                    "latency_s": answer.latency_ms / 1000,
                    "local_cost_micro_usd": answer.local_cost_micro_usd,
                    "load": os.getloadavg()[0],
                }
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                done[(q.id, name)] = row
            if (i + 1) % 10 == 0:
                elapsed = time.perf_counter() - started
                print(f"  {i + 1}/{len(questions)} questions, {elapsed:.0f} s", flush=True)
    report(names, questions, done)


def report(names: list[str], questions, done: dict) -> None:  # type: ignore[no-untyped-def]
    ids = [q.id for q in questions if all((q.id, n) in done for n in names)]
    has_ids = [i for i in ids if done[(i, names[0])]["has_answer"]]
    no_ids = [i for i in ids if not done[(i, names[0])]["has_answer"]]
    print(
        f"\n[local answers: {len(ids)} questions ({len(has_ids)} HasAns, {len(no_ids)} NoAns), interleaved]"
    )
    print(
        f"{'setting':<12} {'tok p50':>7} {'mean':>6} {'HasAns F1':>9} {'NoAns F1':>8} {'abstain':>7} "
        f"{'gen s p50':>9} {'answer s p50':>12} {'cost µUSD':>9} {'load':>5}"
    )
    for name in names:
        rows = [done[(i, name)] for i in ids]
        has_f1 = [done[(i, name)]["f1"] for i in has_ids]
        no_f1 = [done[(i, name)]["f1"] for i in no_ids]
        print(
            f"{name:<12} {median([r['prompt_tokens'] for r in rows]):>7.0f} "
            f"{mean([r['prompt_tokens'] for r in rows]):>6.1f} {100 * mean(has_f1):>9.1f} "
            f"{100 * mean(no_f1):>8.1f} {mean([r['abstained'] for r in rows]):>7.1%} "
            f"{median([r['seconds'] for r in rows]):>9.2f} {median([r['latency_s'] for r in rows]):>12.2f} "
            f"{mean([r['local_cost_micro_usd'] for r in rows]):>9.1f} {mean([r['load'] for r in rows]):>5.2f}"
        )
    base = names[0]
    for name in names[1:]:
        diffs = [100 * (done[(i, name)]["f1"] - done[(i, base)]["f1"]) for i in has_ids]
        low, high = bootstrap_ci(diffs) if diffs else (float("nan"), float("nan"))
        ratios = [done[(i, name)]["seconds"] / done[(i, base)]["seconds"] for i in ids]
        token_ratio = sum(done[(i, name)]["prompt_tokens"] for i in ids) / sum(
            done[(i, base)]["prompt_tokens"] for i in ids
        )
        print(
            f"{name} vs {base}: HasAns F1 {mean(diffs):+.1f} points (95 % CI {low:+.1f} .. {high:+.1f}); "
            f"prompt tokens x{token_ratio:.2f}; generation seconds x{median(ratios):.2f} (median ratio per "
            "question)"
        )


if __name__ == "__main__":
    main()
