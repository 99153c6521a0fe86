# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PYTHON        ?= python3
VENV          ?= .venv
BIN           := $(VENV)/bin
STAMP         := $(VENV)/.installed
OUT           ?= results/quickstart
TORCH_VERSION ?= 2.13.0
# PyPI's torch for Linux is a multi-GB CUDA build; this index has the CPU build. Set
# TORCH_INDEX= (empty) to take torch from your own pip configuration instead.
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu

.PHONY: setup demo test lint bench clean docs-figures

# torch goes in first, so the project's torch>=2.2 needs nothing more. A torch wheel that
# pip can already see without an index (pip's find-links) is used as is; otherwise the CPU
# build comes from TORCH_INDEX.
$(STAMP): pyproject.toml setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if [ -z "$(TORCH_INDEX)" ] || $(BIN)/python -m pip install -q --dry-run --no-deps \
	        --no-index torch==$(TORCH_VERSION) >/dev/null 2>&1; then \
	    $(BIN)/python -m pip install -q torch==$(TORCH_VERSION); \
	else \
	    $(BIN)/python -m pip install -q torch==$(TORCH_VERSION) --extra-index-url $(TORCH_INDEX); \
	fi
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

# the README's demo table, stragglers table and figures, with the command and date
docs-figures: setup
	$(BIN)/python docs/make_figures.py

clean:
	rm -rf results .pytest_cache
