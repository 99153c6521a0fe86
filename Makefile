# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= results/quickstart

.PHONY: setup demo test lint bench clean

# torch 2.13.0 (CPU build) goes in first, so the project's torch>=2.2 needs nothing more.
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/ecofed-sim sweep scenarios/sweeps/quickstart_uplink.yaml --out $(OUT)
	$(BIN)/ecofed-sim plot $(OUT) --format png,pdf

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/ecofed_cache.py
	$(BIN)/python benchmarks/sweep_reuse.py
	$(BIN)/python benchmarks/planner_accuracy.py

clean:
	rm -rf results .pytest_cache
