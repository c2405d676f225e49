# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv and install Turnout into it on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DURATION ?=
# Dev tools at the exact versions of constraints.txt; `CONSTRAINTS=` installs
# the newest ones instead (to bump that file).
CONSTRAINTS ?= -c constraints.txt

.PHONY: demo test lint bench install

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e '.[dev,uvloop,examples]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/turnout demo $(if $(DURATION),--duration $(DURATION))

lint: $(VENV)/.installed
	$(BIN)/ruff check proxy tests bench
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py
