# nlb_suite: every target goes through the `nlb-suite` CLI in the project's virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL ?= smoothing
DATASET ?= synth_maze
PHASE ?= val
BIN_MS ?= 5
ARGS ?=
NLB_TOOLS_ENV ?= .venv-nlb-tools

.PHONY: install test eval report oracle bench clean

install: $(BIN)/nlb-suite

$(BIN)/nlb-suite: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	# nlb_tools 0.0.4 is the reference for the scorer tests. Its pins cannot install on Python 3.11,
	# and it ships a top-level `tests` package, so it lives in its own folder outside site-packages.
	$(BIN)/pip install -q --no-deps --target $(VENV)/nlb_tools_ref nlb-tools==0.0.4
	touch $@

test: install
	$(BIN)/python -m pytest -q

eval: install
	$(BIN)/nlb-suite eval --model $(MODEL) --dataset $(DATASET) --phase $(PHASE) --bin $(BIN_MS) $(ARGS)

report: install
	$(BIN)/nlb-suite report --html

oracle: install
	$(BIN)/python -m pytest -q -m oracle --oracle-env $(NLB_TOOLS_ENV)

clean:
	rm -rf $(VENV) build *.egg-info
