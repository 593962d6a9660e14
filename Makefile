# presence: `make run` (embedded, no services) and `make test` (real Redis + MongoDB-compatible).
PYTHON ?= python3
VENV := .venv
# make cluster: the Redis topology (standalone, sentinel or cluster) and where it logs.
REDIS ?= standalone
CLUSTER_DIR ?= $(CURDIR)/.run/cluster
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all run console js-client test test-fault test-unit lint format services peer cluster cluster-stop bench bench-quick bench-peer clean

all: lint test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

## run: one worker in embedded mode on port 3000 (nothing persisted, no services needed);
## the console at / is built first when Node.js is there
run: $(STAMP)
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory console; \
		else echo "run: no Node.js, the console at / will say how to build it"; fi
	env -u PRESENCE_REDIS_URL -u PRESENCE_MONGO_URL PRESENCE_LOG_FORMAT=$${PRESENCE_LOG_FORMAT:-text} \
		$(BIN)/presence serve

## console: bundle the web console (on the JavaScript client of clients/js, esbuild) into
## presence/console/static
console: presence/console/static/console.js

## js-client: the JavaScript client's dependencies (the stock socket.io-client)
js-client: clients/js/node_modules/.installed

clients/js/node_modules/.installed: clients/js/package.json clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

presence/console/static/console.js: console/src/console.js console/package-lock.json \
		clients/js/node_modules/.installed $(wildcard clients/js/src/*.js)
	cd console && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

## cluster: WORKERS (3) workers, Redis, MongoDB-compatible server and nginx on PORT (3000)
cluster: $(STAMP) services
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory console; fi
	$(BIN)/python -m scripts.cluster start --redis $(REDIS) --run-dir $(CLUSTER_DIR)

## cluster-stop: stop what `make cluster` started
cluster-stop:
	$(BIN)/python -m scripts.cluster stop --run-dir $(CLUSTER_DIR)

## services: install redis-server and build FerretDB when no mongod is on PATH (cached)
services:
	bash scripts/test-services.sh

## test: unit, contract, integration and end-to-end tests; starts its own Redis and
## MongoDB-compatible servers on free ports
test: $(STAMP) services console js-client
	$(BIN)/pytest --ignore=tests/fault $(PYTEST_ARGS)

## test-fault: the fault and abuse suite (about 5 minutes); regenerates docs/RELIABILITY.md
test-fault: $(STAMP) services
	$(BIN)/pytest tests/fault $(PYTEST_ARGS)

## bench: every benchmark (about half an hour); results in docs/bench/ and docs/BENCHMARKS.md
## (BENCH="b01 b05" runs some)
bench: $(STAMP) services peer
	$(BIN)/python -m bench $(BENCH)
	$(BIN)/python -m bench.capacity

## bench-peer: B12 alone, presence side by side with Centrifugo v6.9.1 (about 10 minutes)
bench-peer: $(STAMP) services peer
	$(BIN)/python -m bench b12

## peer: build Centrifugo v6.9.1 from the Go module proxy into .cache/peer (once)
peer:
	bash scripts/peer.sh

## bench-quick: under two minutes, exact counts and loose ratios; fails on a missed count
bench-quick: $(STAMP) services
	$(BIN)/python -m bench --quick

## test-unit: pure tests only, no services
test-unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

## lint: ruff, ruff format --check, mypy --strict, import-linter layers
lint: $(STAMP)
	$(BIN)/ruff check presence tests scripts bench devstack
	$(BIN)/ruff format --check presence tests scripts bench devstack
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m bench.capacity --check

format: $(STAMP)
	$(BIN)/ruff check --fix presence tests scripts bench devstack
	$(BIN)/ruff format presence tests scripts bench devstack

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
