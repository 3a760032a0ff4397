# nlb_suite: every target runs the `nlb-suite` CLI (or pytest) in the project's virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL ?= smoothing
DATASET ?= synth_maze
PHASE ?= val
BIN_MS ?= 5
ARGS ?=
NLB_TOOLS_ENV ?= .venv-nlb-tools
YU2009 ?= ../shared/data/real/yu2009_pmd_delayed_reach_spikecounts.mat
YU2009_DIR ?= runs/yu2009

.PHONY: install test eval tune report oracle yu2009 bench clean

install: $(BIN)/nlb-suite

$(BIN)/nlb-suite: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	# nlb_tools 0.0.4 is the reference for the scorer tests. Its pins cannot install on Python 3.11,
	# and it ships a top-level `tests` package, so it lives in its own folder outside site-packages.
	$(BIN)/pip install -q --no-deps --target $(VENV)/nlb_tools_ref nlb-tools==0.0.4
	# LFADS's C++ time loops, built here once rather than during the first fit (LFADS runs the same
	# loops in Python where this fails).
	$(BIN)/python -c 'from nlb_suite.models.lfads.native import build; build()'
	touch $@

test: install
	$(BIN)/python -m pytest -q

eval: install
	$(BIN)/nlb-suite eval --model $(MODEL) --dataset $(DATASET) --phase $(PHASE) --bin $(BIN_MS) $(ARGS)

# A hyperparameter study on Ray Tune (AutoLFADS' PBT for lfads): `make tune MODEL=lfads DATASET=synth_maze`.
tune: install
	$(BIN)/nlb-suite tune --model $(MODEL) --dataset $(DATASET) --phase $(PHASE) --bin $(BIN_MS) $(ARGS)

report: install
	$(BIN)/nlb-suite report --html

# Our tensors, targets and scores against nlb_tools 0.0.4 in its own pinned Python 3.10 environment.
oracle: install
	$(BIN)/python -m pytest -q --oracle-env $(NLB_TOOLS_ENV) tests/test_oracle.py tests/test_scoring_equality.py

# Real macaque PMd spikes (Yu et al. 2009) as an NLB dataset: `make eval DATASET=runs/yu2009/yu2009_pmd.toml`.
yu2009: install
	$(BIN)/nlb-suite import-trials $(YU2009) --name yu2009_pmd --out $(YU2009_DIR) --window 0 300 --forward-ms 100

bench: install
	$(BIN)/python benchmarks/bench_tensors.py
	$(BIN)/python benchmarks/bench_synth.py
	$(BIN)/python benchmarks/bench_scoring.py
	$(BIN)/python benchmarks/bench_gpfa.py
	$(BIN)/python benchmarks/bench_lfads.py --peer lfads-torch
	$(BIN)/python benchmarks/bench_ndt.py
	$(BIN)/python benchmarks/bench_tune.py

clean:
	rm -rf $(VENV) build *.egg-info
