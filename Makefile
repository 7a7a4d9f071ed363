# Penny: two commands do everything on a fresh clone.
#   make run   — install, assemble the default model, ingest samples/, serve on 127.0.0.1:8000
#   make test  — install with dev extras and run the test suite
# Containers (docs/deploy/README.md): `make image` builds Penny's image, `make test-deploy` runs its compose stack.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: run test test-slow test-deploy image lint bench results install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel

# llama.cpp is compiled for this CPU (-march=native) but without AMX: CPUs that advertise AMX inside VMs
# that do not enable its register state (firecracker here) fault on the first AMX instruction. Built apart,
# without pip's wheel cache, because the cache keys a built wheel by its source, not by these flags.
LLAMA_PIN := $(shell grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'

# The stamp names the pin, so only a new llama-cpp-python pin rebuilds it (a 4-6 min compile).
LLAMA_STAMP := $(VENV)/.llama-$(subst llama-cpp-python[server]==,,$(LLAMA_PIN))

$(LLAMA_STAMP): | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet --no-cache-dir --force-reinstall --no-deps '$(LLAMA_PIN)'
	touch $@

# Stamps re-run pip only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml $(LLAMA_STAMP) | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(LLAMA_STAMP) | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/penny models path qwen2.5-0.5b
	$(BIN)/penny ingest samples/ --quiet
	@$(BIN)/penny users list | grep -q '^demo ' || $(BIN)/penny users add demo
	@test -s .penny/demo.key || $(BIN)/penny keys create demo --key-file .penny/demo.key
	$(BIN)/penny serve --host $(HOST) --port $(PORT)

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-slow: install-dev
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python benchmarks/bench_api.py
	$(BIN)/python benchmarks/bench_overload.py
	$(BIN)/python benchmarks/bench_ledger.py
	$(BIN)/python benchmarks/bench_logprobs.py
	$(BIN)/python benchmarks/bench_pool.py
	$(BIN)/python benchmarks/bench_pool_overhead.py
	$(BIN)/python benchmarks/bench_index.py
	$(BIN)/python benchmarks/bench_retrieval_scale.py
	$(BIN)/python benchmarks/bench_evaluator.py
	$(BIN)/python benchmarks/bench_question_score.py
	$(BIN)/python benchmarks/bench_limits.py
	$(BIN)/python benchmarks/bench_prompt_diet.py --limit 30
	$(BIN)/python benchmarks/bench_prefix_reuse.py
	$(BIN)/python benchmarks/bench_overhead.py
	$(BIN)/python benchmarks/bench_cold_passages.py
	$(BIN)/python benchmarks/bench_replicas.py

# docs/RESULTS.md from the eval reports under docs/eval/ (stdlib only: no install needed).
results:
	$(PYTHON) scripts/results.py

# The shipped default calibration rebuilt from its stored runs by the named recipe (eval/recipes.py);
# tests/eval/test_recipe.py checks that assistant/data/calibration.json is what this makes.
.PHONY: calibration
calibration: install
	set -o pipefail; $(BIN)/penny calibrate --default --ablation | tee docs/eval/default-calibration/calibrate-output.txt

# Penny's image and the compose stack's service images, with Debian's podman and no registry: the base image
# is made with mmdebstrap, pip in the build uses this host's pip configuration. The first build compiles
# llama.cpp for every x86-64 CPU level (tens of minutes); later ones reuse the layers whose inputs are unchanged.
image:
	PYTHON=$(PYTHON) deploy/container/build.sh

# The compose stack of those images: up, a question through the load balancer, /metrics, down. Not part of
# `make test` (nor CI): a cold image build does not fit CI's time.
test-deploy: image install-dev
	$(BIN)/pytest -m deploy -s tests/deploy $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .penny .pytest_cache
