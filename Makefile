# Two commands on a fresh machine with Python 3.11:
#   make run    set up, then start the bot (terminal chat when no credentials are set)
#   make test   set up, then run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench eval eval-real clean

$(STAMP): pyproject.toml setup.py handlers/_tagcore.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/suarawarga run

test: $(STAMP)
	$(BIN)/pytest -q

# Ruff (lint and format check), mypy (strict on handlers/ and storage/) and the import
# contracts in pyproject.toml. CI runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy handlers storage bot
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

eval: $(STAMP)
	$(BIN)/python -m handlers.tagging_eval

# The tagger on real residents' text (rebuilt from fetched snapshots; see bench/realtext/).
MIRROR ?= /work/.mirror
eval-real: $(STAMP)
	$(BIN)/python bench/realtext/eval_real.py --mirror $(MIRROR)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
