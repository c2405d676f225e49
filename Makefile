# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv and install Turnout into it on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DURATION ?=
# Dev tools at the exact versions of constraints.txt; `CONSTRAINTS=` installs
# the newest ones instead (to bump that file).
CONSTRAINTS ?= -c constraints.txt
# deploy/kubernetes/ is validated against these Kubernetes versions' schemas, by
# `make lint` and by tests/deploy/ (which read this line).
K8S_VERSIONS := 1.31 1.37

.PHONY: demo test lint lint-dashboards bench install

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e '.[dev,uvloop,examples]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/turnout demo $(if $(DURATION),--duration $(DURATION))

lint: $(VENV)/.installed lint-dashboards
	$(BIN)/ruff check proxy tests bench
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/kubernetes-validate --strict --quiet $(addprefix -k ,$(K8S_VERSIONS)) $(filter-out %/kustomization.yaml,$(wildcard deploy/kubernetes/*.yaml))

# dashboards/: the Grafana dashboard type-checked against Grafana's own schema
# (npm @grafana/schema + tsc) and the alert rules checked and unit-tested with
# promtool (Debian's prometheus package). A missing tool is skipped with the
# command to install it, except in CI (CI set), where it fails.
SCHEMA := dashboards/schema-check
$(SCHEMA)/node_modules/.installed: $(SCHEMA)/package-lock.json
	cd $(SCHEMA) && npm ci --ignore-scripts --no-audit --no-fund --cache "$$PWD/.npm-cache" \
	  && touch node_modules/.installed

lint-dashboards:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(SCHEMA)/node_modules/.installed \
	  && cd $(SCHEMA) && npm run --silent check && echo "dashboards/turnout.json: Grafana schema OK"; \
	elif [ -n "$$CI" ]; then echo "npm is required in CI (apt-get install nodejs npm)" >&2; exit 1; \
	else echo "npm not found: dashboard schema check skipped (apt-get install nodejs npm)"; fi
	@if command -v promtool >/dev/null; then promtool check rules dashboards/alerts.yaml \
	  && promtool test rules dashboards/tests/*.yaml; \
	elif [ -n "$$CI" ]; then echo "promtool is required in CI (apt-get install prometheus)" >&2; exit 1; \
	else echo "promtool not found: alert rule checks skipped (apt-get install prometheus)"; fi

# The example pair's NestJS service (tests/examples/): exact packages from the
# lock file, compiled with tsc. Without npm the example tests say what to install
# and are skipped (they fail instead when CI is set).
NEST := examples/new-nestjs
$(NEST)/dist/.built: $(NEST)/package-lock.json $(NEST)/tsconfig.json $(shell find $(NEST)/src -name '*.ts')
	@if command -v npm >/dev/null; then \
	  cd $(NEST) && npm ci --ignore-scripts --no-audit --no-fund --cache "$$PWD/.npm-cache" \
	  && npm run build && touch dist/.built; \
	else echo "npm not found: the NestJS example tests will be skipped (apt-get install nodejs npm)"; fi

test: lint $(NEST)/dist/.built
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py
