# Developer entry points. The two that matter on a fresh machine:
#   make demo   - local control plane + Northflank API simulator + operator + sample resources
#   make test   - lint, type-check and the whole test suite (what CI runs via .ci/run)

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(PYTHON) -m uv
# Use the machine's Python; never download an interpreter.
export UV_PYTHON_DOWNLOADS := never

CONTROL_PLANE_DIR ?= .tmp/control-plane
# mypy's and ruff's caches outside the checkout: CI runs in a fresh clone each time, and a warm mypy
# cache turns a minute of type-checking into seconds (sources are compared by hash, not by path).
TOOL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/northflank-llm-operator
export MYPY_CACHE_DIR ?= $(TOOL_CACHE)/mypy
export RUFF_CACHE_DIR ?= $(TOOL_CACHE)/ruff
# pytest-xdist workers of make test, each with its own control plane and simulator. The suite mostly
# waits (polls, leases, rate-limit windows), so more workers than this machine's 2 cores pay off.
TEST_WORKERS ?= 3
# The test recipe's sub-makes; not $(MAKE) itself, which would make `make -n test` run the whole suite.
SUBMAKE = $(MAKE) --no-print-directory
CHART := charts/northflank-llm-operator
CRD := crds/llmmodeldeployments.northflank-llm-operator.dev.yaml

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## install uv (if missing) and the locked Python environment into .venv
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) sync --frozen

.PHONY: tools
tools: ## build pinned kube-apiserver, etcd, kubectl, helm, helm-docs, promtool and the GitOps evaluators; install the official JS client for the contract schemas (cached outside the repo)
	tests/controlplane/build.sh all
	$(PYTHON) tests/contract/regenerate.py --install

.PHONY: contract
contract: ## regenerate tests/contract/schemas from the pinned official Northflank JS client (byte-identical unless the pin changed)
	$(PYTHON) tests/contract/regenerate.py

.PHONY: node-tools
node-tools: ## Debian packages (apt, only when missing), kubelet & co., CoreDNS and the images for the node tests (cached outside the repo)
	tests/node/setup.sh
	tests/controlplane/build.sh node
	@# The image build needs root (buildah, mmdebstrap); without root the node tests skip and say why.
	if [ "$$(id -u)" = 0 ] && command -v buildah >/dev/null; then tests/node/build_image.sh && tests/node/build_image.sh pause; fi

.PHONY: lint
lint: setup ## ruff lint + format check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

.PHONY: typecheck
typecheck: setup ## mypy --strict on the operator, the simulator and the tests
	$(UV) run mypy

.PHONY: test
test: setup tools ## everything CI runs: lint, types, unit, simulator, chart, GitOps, integration and node tests
	@# Three stages side by side; each one's output is shown when it ends, and any failure fails make test:
	@#  - the node tests (build their binaries and image when missing, start a real node), niced;
	@#  - lint and type-check, niced;
	@#  - every other test on $(TEST_WORKERS) xdist workers, a module at a time (its module-scoped operator
	@#    or release starts once), in collection order: chart, GitOps and integration modules first.
	mkdir -p .tmp
	( nice -n 5 $(SUBMAKE) node-tools && nice -n 5 $(UV) run pytest -m node -p no:cacheprovider tests/node ) \
	  > .tmp/test-node.log 2>&1 & node=$$!; \
	( nice -n 10 $(SUBMAKE) lint typecheck ) > .tmp/test-static.log 2>&1 & static=$$!; \
	status=0; \
	$(UV) run pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=10 -m "not node" || status=$$?; \
	for stage in static node; do \
	  pid=$${!stage}; stage_status=0; wait $$pid || stage_status=$$?; \
	  echo "=== $$stage stage (exit $$stage_status): .tmp/test-$$stage.log ==="; cat .tmp/test-$$stage.log; \
	  [ $$stage_status -eq 0 ] || status=1; \
	done; \
	exit $$status

SOAK_RUNS ?= 10
.PHONY: soak
soak: setup tools ## the integration tests SOAK_RUNS times in a row (default 10), stopping at the first failure: flakes show here, not in CI
	mkdir -p .tmp/soak
	for run in $$(seq 1 $(SOAK_RUNS)); do \
	  start=$$(date +%s); \
	  $(UV) run pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder -m integration -p no:cacheprovider \
	    -q tests/integration > .tmp/soak/run-$$run.log 2>&1 || { echo "run $$run failed: .tmp/soak/run-$$run.log"; exit 1; }; \
	  echo "run $$run passed in $$(( $$(date +%s) - start ))s: $$(tail -1 .tmp/soak/run-$$run.log)"; \
	done

.PHONY: test-fast
test-fast: setup ## tests that need no control plane
	$(UV) run pytest -m "not integration and not node"

IN_CLUSTER ?=
.PHONY: demo
demo: setup tools $(if $(IN_CLUSTER),node-tools) ## run the local demo and watch kubectl get llmd move through the phases (IN_CLUSTER=1: the operator in a Pod from the chart, on a real node; root)
	$(UV) run python -m tests.demo.run_demo $(if $(IN_CLUSTER),--in-cluster)

BENCH_ARGS ?=
.PHONY: bench
bench: setup tools ## benchmark this operator against a timer-per-resource kopf design (N=100, 1000; BENCH_ARGS="--n 10000")
	$(UV) run --frozen --group bench python -m tests.bench.run_bench $(BENCH_ARGS)
	@echo "Issue 14's fleet scenarios (shared account, flaky edge, one transitional, slow projects): make bench-scenarios"

SCENARIO_ARGS ?=
.PHONY: bench-scenarios
bench-scenarios: setup ## fleet scenarios on a fake clock, in-process (shared account, flaky edge, one transitional at N=5000, slow projects; a few minutes)
	$(UV) run --frozen python -m tests.bench.scenarios $(SCENARIO_ARGS)

.PHONY: bench-memory
bench-memory: setup ## memory the operator keeps per resource, by component (tracemalloc, 10,000 resources)
	$(UV) run python -m tests.bench.memory_per_resource

.PHONY: bench-metrics
bench-metrics: setup ## cost of one /metrics scrape at 100, 1,000 and 10,000 resources: time, bytes, event-loop stall, RSS
	$(UV) run python -m tests.bench.metrics_scrape $(BENCH_ARGS)

.PHONY: control-plane-up
control-plane-up: setup tools ## start a local kube-apiserver + etcd in $(CONTROL_PLANE_DIR) (source its env file)
	$(UV) run python tests/controlplane/controlplane.py start --dir $(CONTROL_PLANE_DIR)

.PHONY: control-plane-down
control-plane-down: ## stop the control plane started by control-plane-up
	$(UV) run python tests/controlplane/controlplane.py stop --dir $(CONTROL_PLANE_DIR)

.PHONY: sync-crds
sync-crds: ## copy the CRD (single source: crds/) into the chart
	cp $(CRD) $(CHART)/files/crds/

.PHONY: chart-docs
chart-docs: ## regenerate the chart README's values table with the pinned helm-docs
	"$$(tests/controlplane/build.sh helm-docs)/helm-docs" --chart-search-root charts

.PHONY: clean
clean: ## remove local build and test state (the tools cache outside the repo stays)
	rm -rf .tmp .pytest_cache .mypy_cache .ruff_cache dist
