# Vigil: every developer and user entry point. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
BIN := $(ROOT)/bin
PYTHON ?= python3.11
# Project tools first on PATH: kwokctl looks kubectl up there and must find ours.
export PATH := $(VENV)/bin:$(BIN):$(PATH)
export GOTOOLCHAIN := local

CLUSTER_TOOLS := $(BIN)/kube-apiserver $(BIN)/kube-controller-manager $(BIN)/kube-scheduler \
	$(BIN)/etcd $(BIN)/kwok $(BIN)/kwokctl $(BIN)/helm $(BIN)/kstatus
PYTEST_ARGS ?=

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt constraints.txt operator/pyproject.toml model-server/pyproject.toml
	@echo "[venv] creating $(VENV) with pinned Python packages (first run: about 2 minutes)"
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; Vigil needs Python 3.11" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --disable-pip-version-check -q --upgrade pip==25.3
	@$(PY) -m pip install --disable-pip-version-check --progress-bar off -r requirements.txt -c constraints.txt \
		| grep -E '^(Collecting|Successfully)' | sed 's/^/[venv] /' || true
	@$(PY) -c 'import vigil_operator, vigil_model_server, kopf, sklearn' || { echo "error: venv install failed" >&2; exit 1; }
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with pinned versions of everything (incl. kubectl)

.PHONY: cluster-tools
cluster-tools: ## Build (or reuse from ~/.cache/vigil) the control-plane binaries and kstatus into bin/
	@hack/cluster-tools.sh

.PHONY: seaweedfs
seaweedfs: ## Build (or reuse from ~/.cache/vigil) SeaweedFS's weed, the S3-compatible server of the storage tests, into bin/
	@hack/seaweedfs.sh

.PHONY: flux-tools
flux-tools: ## Build (or reuse from ~/.cache/vigil) Flux's source-, kustomize- and helm-controller and CRDs into bin/
	@hack/flux-tools.sh

.PHONY: prometheus
prometheus: ## Install Prometheus from Debian when missing
	@hack/install-debian-tools.sh prometheus

.PHONY: actionlint
actionlint: ## Build (or reuse from ~/.cache/vigil) actionlint, which lints .github/workflows/, into bin/
	@hack/actionlint.sh --check || hack/actionlint.sh

.PHONY: deps
deps: venv prometheus actionlint
	@if ! hack/cluster-tools.sh --check >/dev/null 2>&1; then hack/cluster-tools.sh; fi
	@hack/flux-tools.sh --check || hack/flux-tools.sh
	@hack/sbom-tools.sh --check || hack/sbom-tools.sh
	@hack/seaweedfs.sh --check || hack/seaweedfs.sh

# The real-node tier's tools and images (root): built once, then reused from ~/.cache/vigil and .work/.
.PHONY: node-deps
node-deps: venv images
	@hack/node-tools.sh --check || hack/node-tools.sh
	@hack/install-debian-tools.sh docker-registry

# The soak, the real-node tier, the GitOps story and the longest e2e stories (the demo, several
# operator replicas, kstatus, RBAC, Argo CD sync) spend their minutes waiting: they run in a
# pytest of their own beside the rest, which runs on PYTEST_WORKERS pytest-xdist workers; their
# output follows. (The GitOps story's steps build on each other: one process plays them in order.)
PYTEST_WORKERS ?= 2
BACKGROUND_TIERS := soak or realnode or gitops or release or story

.PHONY: test
test: deps node-deps ## Run the whole suite: lint, unit, integration, end-to-end and real-node tests
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check --quiet .
	@$(VENV)/bin/mypy
	@$(BIN)/actionlint
	@mkdir -p .work; \
	echo "[test] the soak, the real-node tier and the long stories run beside the rest (log: .work/test-background.log)"; \
	$(VENV)/bin/pytest -m "$(BACKGROUND_TIERS)" $(PYTEST_ARGS) >.work/test-background.log 2>&1 & background=$$!; \
	trap 'kill -TERM $$background 2>/dev/null; wait $$background; exit 130' INT TERM; \
	$(VENV)/bin/pytest -m "not ($(BACKGROUND_TIERS) or reproducible)" -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS); main=$$?; \
	echo "[test] waiting for the soak, the real-node tier and the long stories ..."; \
	wait $$background; other=$$?; \
	echo "[test] === the soak, the real-node tier and the long stories ==="; cat .work/test-background.log; \
	[ $$main -eq 0 ] && [ $$other -eq 0 ]

.PHONY: test-realnode
test-realnode: deps node-deps ## Only the real-node tier: the chart, the images and real pods (root)
	@$(VENV)/bin/pytest tests/realnode $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Only the fast unit tests
	@$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

# The local cluster's tiers without the real node (root, cgroup v1), one at a time, as the forge's CI
# (.github/workflows/ci.yml) runs them: TIER=main (integration and end-to-end on PYTEST_WORKERS
# workers), gitops (the Flux story), soak, or story (the demo, HA, kstatus, RBAC, Argo CD sync). `make test`
# runs all four side by side.
TIER ?= main

.PHONY: test-cluster
test-cluster: deps ## The local cluster's tiers without the real node: TIER=main (integration, e2e), gitops, soak or story
	@case "$(TIER)" in \
	main) $(VENV)/bin/pytest tests/integration tests/e2e -m "not ($(BACKGROUND_TIERS) or reproducible)" \
		-n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS) ;; \
	gitops|soak|story) $(VENV)/bin/pytest -m "$(TIER)" $(PYTEST_ARGS) ;; \
	*) echo "error: TIER must be main, gitops, soak or story, not '$(TIER)'" >&2; exit 2 ;; \
	esac

.PHONY: lint
lint: venv actionlint ## ruff, mypy and actionlint
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy
	@$(BIN)/actionlint

.PHONY: cluster-up
cluster-up: deps ## Start the local cluster by hand (kwok nodes, plus a real node when this machine can; NODE=kwok: without)
	@PYTHONPATH=tests $(PY) -m harness.cli up
	@if [ "$(NODE)" = kwok ]; then echo "NODE=kwok: kwok's nodes only"; \
	elif problems=$$(PYTHONPATH=tests $(PY) -m harness.node can-run); then \
		$(MAKE) --no-print-directory node-deps && PYTHONPATH=tests $(PY) -m harness.node up; \
	else echo "no real node here: $$problems (kwok's nodes only)"; fi

.PHONY: cluster-down
cluster-down: venv ## Stop the local cluster started by cluster-up (and its real node)
	@PYTHONPATH=tests $(PY) -m harness.node down
	@PYTHONPATH=tests $(PY) -m harness.cli down

.PHONY: node-tools
node-tools: ## Build (or reuse) the real node's binaries: kubelet, kube-proxy, containerd 2.x, Prometheus 3, prometheus-operator, CoreDNS; runc, CNI from Debian
	@hack/node-tools.sh

.PHONY: node-up
node-up: venv ## Start a real node (containerd, kubelet, kube-proxy; root) in the cluster from cluster-up
	@hack/node-tools.sh --check || hack/node-tools.sh
	@PYTHONPATH=tests $(PY) -m harness.node up

.PHONY: node-down
node-down: venv ## Stop the real node and remove its mounts, network, iptables chains and cgroups
	@PYTHONPATH=tests $(PY) -m harness.node down
	@PYTHONPATH=tests $(PY) -m harness.node leftovers

.PHONY: bench-decisions
bench-decisions: venv ## Rollback rule vs the naive per-window rule (Flagger/Argo Rollouts): false/missed rollbacks; shadow: paired vs unpaired test
	@$(PY) bench/decisions.py

.PHONY: bench-server
bench-server: venv ## Our model server vs MLServer 1.7 under wrk (127.0.0.1, bounded), with ratios; p99 with mirroring on vs off (fails above 1.10)
	@hack/install-debian-tools.sh wrk
	@$(PY) bench/server.py

.PHONY: bench-storage
bench-storage: venv ## Time a model load from file://, pvc://, http:// and s3:// (SeaweedFS), in process and as a cold start (reports only)
	@hack/seaweedfs.sh --check || hack/seaweedfs.sh
	@$(PY) bench/storage.py

.PHONY: bench-scale
bench-scale: deps ## One operator, 100/1,000/3,000 ModelDeployments on kwok with a real Prometheus: RSS, CPU, API and PromQL rates, spec->Deployment and breach->rollback times, before/after (fails on a missed goal at 1,000; about 25 min; SIZES=100,1000)
	@$(PY) bench/scale.py --sizes $(or $(SIZES),100,1000,3000)

.PHONY: clean
clean: ## Remove bin/ links, .work/ and caches (keeps .venv and ~/.cache/vigil)
	rm -rf bin .work .pytest_cache .ruff_cache .mypy_cache

# --- Install paths: chart, plain manifests, images, kind (docs/install.md) -----------------
DOCKER ?= docker
KIND ?= kind
KIND_CLUSTER ?= vigil
KIND_CONTEXT := kind-$(KIND_CLUSTER)
IMAGE_TAG ?= 0.1.0
OPERATOR_IMAGE ?= ghcr.io/vigil-dev/vigil-operator:$(IMAGE_TAG)
SERVER_IMAGE ?= ghcr.io/vigil-dev/vigil-model-server:$(IMAGE_TAG)
# The project's helm (make cluster-tools) when built, else the one on PATH.
HELM ?= $(if $(wildcard $(BIN)/helm),$(BIN)/helm,helm)

.PHONY: sync-crds
sync-crds: ## Copy crds/modeldeployment.yaml into the chart (charts/vigil/files/)
	@cp crds/modeldeployment.yaml charts/vigil/files/modeldeployment.yaml

.PHONY: manifests
manifests: venv sync-crds ## Regenerate the plain install (manifests/) from the chart
	@test -x $(BIN)/helm || hack/cluster-tools.sh
	@$(PY) manifests/generate.py $(BIN)/helm

.PHONY: images
images: ## Build the operator and model server images (Docker, else buildah) and their archives in .work/images/
	@OPERATOR_IMAGE=$(OPERATOR_IMAGE) SERVER_IMAGE=$(SERVER_IMAGE) $(if $(BASE),BASE=$(BASE)) hack/images.sh


.PHONY: krew-archive
krew-archive: venv ## The kubectl vigil plugin's krew archive in .work/release/, and its sha256 in plugins/vigil.yaml
	@$(PY) hack/kubectl-vigil-archive.py --out .work/release --manifest plugins/vigil.yaml

# --- Releases (docs/release.md) ------------------------------------------------------------
.PHONY: release
release: ## Cut a release: VERSION=x.y.z everywhere, CHANGELOG check, images, SBOMs, chart; pushed with REGISTRY=host[:port]/path
	@VERSION=$(VERSION) REGISTRY=$(REGISTRY) hack/release.sh

.PHONY: cosign
cosign: ## Build (or reuse) cosign for signing releases (COSIGN_KEY=...); not in deps: about 28 minutes cold on a busy 2-core machine
	@hack/cosign.sh

.PHONY: check-reproducible
check-reproducible: ## Build both images twice from clean clones without cache; fail (naming the layer and files) unless the digests match
	@hack/check-reproducible.sh

.PHONY: kind-up
kind-up: ## Create a kind cluster named $(KIND_CLUSTER) (needs Docker and kind)
	@$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || $(KIND) create cluster --name $(KIND_CLUSTER) --wait 120s

.PHONY: deploy
deploy: ## Load the images into kind and helm-install the chart (context kind-$(KIND_CLUSTER) only)
	$(KIND) load docker-image $(OPERATOR_IMAGE) $(SERVER_IMAGE) --name $(KIND_CLUSTER)
	$(HELM) upgrade --install vigil charts/vigil --kube-context $(KIND_CONTEXT) \
		--namespace vigil-system --create-namespace --wait --timeout 5m \
		--set image.registry= --set image.repository=$(firstword $(subst :, ,$(OPERATOR_IMAGE))) --set image.tag=$(IMAGE_TAG) \
		--set image.pullPolicy=Never --set defaultImage=$(SERVER_IMAGE)

.PHONY: kind-demo
kind-demo: kind-up images deploy ## kind-up + images + deploy, then a sample ModelDeployment
	kubectl --context $(KIND_CONTEXT) create namespace ml --dry-run=client -o yaml | kubectl --context $(KIND_CONTEXT) apply -f -
	kubectl --context $(KIND_CONTEXT) apply -f manifests/samples/modeldeployment.yaml
	@echo "kubectl --context $(KIND_CONTEXT) get mdep -n ml -w   (docs/install.md: models and Prometheus on kind)"

.PHONY: demo
demo: deps ## The whole story: rollout, accuracy in Prometheus, automatic rollback; on a real node when it can (NODE=real|kwok; KEEP=1 leaves it up; STRATEGY=shadow)
	@if [ "$(NODE)" != kwok ] && PYTHONPATH=tests $(PY) -m harness.node can-run >/dev/null; then \
		echo "[demo] this machine can run a real node: building (or reusing) its tools and the images"; \
		$(MAKE) --no-print-directory node-deps; fi
	@PYTHONPATH=tests $(PY) hack/demo.py --node $(or $(NODE),auto) $(if $(filter-out 0,$(KEEP)),--keep,) $(if $(STRATEGY),--strategy $(STRATEGY),)

.PHONY: demo-down
demo-down: venv ## Stop a demo left running with KEEP=1
	@PYTHONPATH=tests $(PY) hack/demo.py --down
