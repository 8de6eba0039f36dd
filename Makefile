# memgate — `make run` starts the gateway, `make test` runs the whole suite.
# Both set everything up from a fresh clone: the virtualenv, the pinned packages,
# and (for tests) Debian's chromium for the dashboard's browser tests.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install install-test browser clients-node run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# The dashboard tests drive Debian's chromium (never a downloaded browser build).
# Under CI=true a failed install fails the build: the browser tests must run there.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || { echo "make: could not install chromium; browser tests will be skipped"; [ "$$CI" != true ]; }; \
	  else echo "make: chromium not found and cannot be installed here; browser tests will be skipped"; \
	    [ "$$CI" != true ]; fi; }

# The official openai Node SDK for tests/e2e/test_clients_node.py (exact pin in package.json,
# no lock file). Without node/npm the Node client tests skip and say why; a failed install
# fails the build under CI=true.
NODE_CLIENT := tests/clients/node

clients-node:
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  echo "make: node/npm not found; the Node SDK client tests will be skipped"; \
	elif [ ! -f $(NODE_CLIENT)/node_modules/.installed ] || [ $(NODE_CLIENT)/package.json -nt $(NODE_CLIENT)/node_modules/.installed ]; then \
	  (cd $(NODE_CLIENT) && npm install --no-package-lock --no-audit --no-fund && touch node_modules/.installed) \
	    || { echo "make: npm install failed in $(NODE_CLIENT); the Node SDK client tests will be skipped"; \
	         [ "$$CI" != true ]; }; \
	fi

run: install
	$(BIN)/memgate up

# Lint first (rules in pyproject.toml), then the suite.
test: install-test browser clients-node
	$(BIN)/ruff check libs services tests bench
	$(BIN)/mypy libs services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-test
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } || \
	  (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || echo "make: wrk not available"
	@if [ -n "$(BASELINE)" ]; then \
	  rm -rf .bench/baseline && mkdir -p .bench && git archive --prefix=baseline/ "$(BASELINE)" | tar -x -C .bench; fi
	cd bench && ../$(BIN)/python gateway.py $(if $(BASELINE),--baseline ../.bench/baseline)

clean:
	rm -rf $(VENV) .pytest_cache
