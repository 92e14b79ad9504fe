# The two set-up commands of the README: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint venv lock

venv: $(VENV)/.installed

# Installed from the lock file, so that every machine gets the same versions (numerics depend on torch,
# timm and numpy); the package folders too: an editable install maps the top-level packages that existed
# when it ran.
$(VENV)/.installed: pyproject.toml constraints.txt requirements.lock app/__init__.py worker/__init__.py migrations/__init__.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# after a change to pyproject.toml's dependencies: resolve them afresh and pin the result
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q -c constraints.txt torch==2.13.0
	.lock-venv/bin/python -m pip install -q -c constraints.txt '.[dev]'
	{ head -2 requirements.lock; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^delbench' \
	  | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements.lock.new && mv requirements.lock.new requirements.lock
	rm -rf .lock-venv

demo: venv
	$(BIN)/delbench demo

test: venv
	bash scripts/test.sh

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
