# The two set-up commands of the README: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint venv

venv: $(VENV)/.installed

# the package folders too: an editable install maps the top-level packages that existed when it ran
$(VENV)/.installed: pyproject.toml constraints.txt app/__init__.py worker/__init__.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/delbench demo

test: venv
	bash scripts/test.sh

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
