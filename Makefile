# The seed's targets and variables. `make train TRAIN_ENVS=3 TRAIN_STEPS=50000` works as before:
# TRAIN_* variables override the job spec (file < environment < --set), see README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Exact pin: a bare `torch` or an open range pulls a multi-GB CUDA build from PyPI.
TORCH_PIN ?= torch==2.13.0
SPEC ?= configs/quickstart.yaml
PYTEST_ARGS ?=

TRAIN_STEPS ?=
TRAIN_ENVS ?=
TRAIN_EPISODE_LENGTH ?=
TRAIN_UPDATE_EPOCHS ?=
TRAIN_BATCH_SIZE ?=
TRAIN_OUTPUT_DIR ?=
export TRAIN_STEPS TRAIN_ENVS TRAIN_EPISODE_LENGTH TRAIN_UPDATE_EPOCHS TRAIN_BATCH_SIZE TRAIN_OUTPUT_DIR

.PHONY: help setup tools train train-20k train-parallel train-pure-rl sweep test test-fast lint bench bench-quick rom manifests clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# The virtual environment is rebuilt only when pyproject.toml changes (a stamp file), so every
# target can depend on it and stay quick.
$(VENV)/.stamp: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	@touch $@

setup: $(VENV)/.stamp ## Create .venv with everything installed (idempotent)

tools: ## Fetch helm, kubectl, sdcc and the manifest linters into .tools/ (idempotent)
	bash scripts/fetch_tools.sh

train: setup ## Train on the built-in game (configs/quickstart.yaml; local MLflow)
	$(BIN)/trainer run $(SPEC)

train-20k: setup ## The seed's 20k-step, 2-environment configuration
	$(BIN)/trainer run configs/train-20k.yaml

train-parallel: setup ## Quick parallel check: 2 environments, 5k steps
	$(BIN)/trainer run configs/parallel.yaml

train-pure-rl: setup ## Longer run: 100k steps, one environment per usable CPU
	$(BIN)/trainer run configs/pure-rl.yaml

sweep: setup ## Run configs/sweep.yaml locally, one process per env count
	$(BIN)/trainer launch configs/sweep.yaml --backend local

test: setup tools ## Run the whole test suite (what CI runs)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup tools ## Unit tests only (skips slow: training, servers, tools)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup ## ruff
	$(BIN)/ruff check trainer tests scripts
	$(BIN)/ruff format --check trainer tests scripts

bench: setup ## Throughput benchmarks side by side, and SB3's PPO beside ours on each built-in game (tables)
	$(BIN)/trainer bench --peer 1,2,3

bench-quick: setup ## A short benchmark smoke run
	$(BIN)/trainer bench --quick

rom: ## Rebuild the built-in games' ROMs with SDCC
	bash scripts/build_rom.sh

manifests: setup tools ## Regenerate k8s/examples, golden files and the chart's values from configs/ and the spec
	UPDATE_GOLDEN=1 $(BIN)/python -m pytest -q tests/test_kube_render.py tests/test_helm_chart.py
	$(BIN)/python scripts/update_readme.py

clean: ## Remove training outputs (keeps .venv and .tools)
	rm -rf training_runs mlruns mlartifacts
