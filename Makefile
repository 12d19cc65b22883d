# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv when it is
# missing, install palaestra into it (idempotent: a stamp file skips the install when nothing
# changed), and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The tests also need the worlds' optional libraries (the `worlds` extra), which the demo does not.
TEST_STAMP := $(VENV)/.installed-worlds
# torch==2.13.0 is the CPU wheel on this disk; an open range would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[textarena,models,export,dev,ray,distributed,interop,tracking,verifiers,trl]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[worlds]'
	touch $(TEST_STAMP)

install: $(TEST_STAMP)

# The main job: the embedded tiny model learns tic-tac-toe (cold start, then self-play RL), then
# prints the before/after table and writes runs/demo/learning_curve.png. A rerun starts afresh.
demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/palaestra train --set train.out=runs/demo

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy src/palaestra/core
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
