# ftp-operator — the two commands a newcomer needs are `make demo` and `make test`.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

export GOTOOLCHAIN ?= local

# Tools and the source-built control plane are cached outside the work tree, keyed by version.
CACHE ?= $(or $(FTPOP_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ftp-operator)
export FTPOP_CACHE := $(CACHE)
TOOLS := $(CACHE)/tools

CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN := $(TOOLS)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUSTOMIZE_VERSION ?= v5.8.1
KUSTOMIZE := $(TOOLS)/kustomize-$(KUSTOMIZE_VERSION)
# Helm is built from its module (no prebuilt downloads here); the ldflags stamp what its release
# builds stamp: its version and the Kubernetes minor its client libraries speak (helm v3.22 uses
# k8s.io v0.37), which `helm template` assumes without a cluster.
HELM_VERSION ?= v3.22.0
HELM_K8S_MINOR ?= 37
HELM := $(TOOLS)/helm-$(HELM_VERSION)
# promtool checks and unit-tests the chart's alert rules (test/chart); built from Prometheus' Go
# module, whose v0.3XX.Y versions are the Prometheus v3.XX.Y releases.
PROMETHEUS_VERSION ?= v0.316.0
PROMETHEUS_RELEASE = $(shell echo $(PROMETHEUS_VERSION) | sed -E 's/^v0\.3([0-9]{2})\./3.\1./')
PROMTOOL := $(TOOLS)/promtool-$(PROMETHEUS_VERSION)
# golangci-lint (v2 configuration format, .golangci.yml), built from its module with the local Go
# toolchain: a linter built by an older Go cannot load code that needs a newer one.
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT := $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)

IMG ?= ghcr.io/kubeftp/ftp-operator:dev
# How the binary is built, here and in the Dockerfile (test/chart checks they agree): static
# (CGO off), reproducible paths, and the manager's default daemon image stamped in.
GO_BUILD_FLAGS = -trimpath -ldflags "-s -w -X main.defaultDaemonImage=$(IMG)"
# The e2e package runs every scenario in three modes (loopback, namespaces, the real node):
# several minutes, beyond go test's default 10-minute timeout on a loaded machine.
GO_TEST_FLAGS ?= -count=1 -timeout 30m
# What the e2e suite found worth showing in a passing run (the real node's kubectl get nodes -o
# wide, the pods and their images): `make test` prints it after the tests.
E2E_REPORT ?= $(CURDIR)/bin/e2e-report.txt
# The image as an OCI archive (make image) and the pod sandbox image for containerd nodes without
# a registry (make pause-image); `ctr -n k8s.io images import` loads both.
IMAGE_ARCHIVE ?= bin/ftp-operator-image.tar
PAUSE_IMG ?= localhost/ftp-operator/pause:3.10
PAUSE_ARCHIVE ?= bin/pause-image.tar

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC manifests from the code's markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: chart
chart: ## Regenerate the chart's CRD and manager ClusterRole (from config/) and its README values table.
	go run ./hack/chartgen

.PHONY: verify
verify: $(CONTROLLER_GEN) $(KUSTOMIZE) ## Fail when generated files drift from the code, gofmt finds work, or a kustomization does not build.
	CONTROLLER_GEN=$(CONTROLLER_GEN) hack/verify-generated.sh
	@for k in config/default config/samples config/prometheus; do $(KUSTOMIZE) build $$k >/dev/null || { echo "verify: kustomize build $$k failed" >&2; exit 1; }; done
	@echo "verify: config/default, config/samples and config/prometheus build with kustomize"

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files -co --exclude-standard '*.go')

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint with .golangci.yml (part of make test).
	$(GOLANGCI_LINT) run ./...

.PHONY: control-plane
control-plane: ## Build (first time, ~10 min) or reuse kube-apiserver and etcd for envtest.
	@hack/control-plane.sh >/dev/null

.PHONY: node-runtime
node-runtime: ## As root: build (first time, a few minutes) or reuse containerd for the real node (test/realnode).
	@if [ "$$(id -u)" = 0 ]; then hack/node-runtime.sh >/dev/null; fi

# Only root can run the real node (test/realnode); everyone else skips it and needs no containerd.
NODE_RUNTIME_ASSETS_CMD = if [ "$$(id -u)" = 0 ]; then hack/node-runtime.sh 2>/dev/null; fi

.PHONY: test
test: verify vet lint control-plane node-runtime $(HELM) $(KUSTOMIZE) $(PROMTOOL) ## Run all tests against a real kube-apiserver and etcd (and, as root, a real node).
	@mkdir -p bin && rm -f $(E2E_REPORT)
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh)" NODE_RUNTIME_ASSETS="$$($(NODE_RUNTIME_ASSETS_CMD))" \
		HELM="$(HELM)" KUSTOMIZE="$(KUSTOMIZE)" PROMTOOL="$(PROMTOOL)" E2E_REPORT="$(E2E_REPORT)" go test $(GO_TEST_FLAGS) ./...
	@if [ -s $(E2E_REPORT) ]; then echo "--- e2e report ($(E2E_REPORT))"; cat $(E2E_REPORT); fi
	$(MAKE) --no-print-directory fuzz

.PHONY: test-chart
test-chart: control-plane $(HELM) $(KUSTOMIZE) $(PROMTOOL) ## Only the packaging tests: chart, kustomize, alert rules, image build flags, GitOps health.
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh)" HELM="$(HELM)" KUSTOMIZE="$(KUSTOMIZE)" PROMTOOL="$(PROMTOOL)" \
		go test $(GO_TEST_FLAGS) ./test/chart/... ./test/gitops/...

.PHONY: helm-lint
helm-lint: $(HELM) ## helm lint the chart, with its default values and with every feature on.
	$(HELM) lint --strict charts/ftp-operator
	$(HELM) lint --strict charts/ftp-operator -f charts/ftp-operator/ci/full-values.yaml

# A count of inputs, not a duration: with a duration, Go 1.26's fuzz coordinator can report a
# spurious "context deadline exceeded" failure when the time is up while a worker is busy
# (go.dev/issue/75804, fixed in Go 1.27; it failed a CI run here). A count has no deadline to
# race. 20000 inputs take 2-10 s per target on two cores.
FUZZ_TIME ?= 20000x

.PHONY: fuzz
fuzz: ## A short run of every fuzz target (FUZZ_TIME each, a count such as 20000x or a duration; part of make test).
	go test -run '^$$' -fuzz '^FuzzConfinedResolve$$' -fuzztime $(FUZZ_TIME) ./ftpd
	go test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_TIME) ./ftpd/fileconfig
	go test -run '^$$' -fuzz '^FuzzParseUsers$$' -fuzztime $(FUZZ_TIME) ./ftpd/fileconfig

.PHONY: bench
bench: ## Benchmark ftpd against vsftpd and pure-ftpd: sessions at scale (N=1000, 10000), then 1 GiB RETR/STOR with curl over loopback, plain and FTPS (needs root; BENCH_RUNS=5, BENCH_TLS=1).
	hack/bench.sh

.PHONY: bench-sessions
bench-sessions: ## Only the sessions-at-scale part of make bench: N concurrent sessions per server, 10-port passive range, writes docs/img/sessions-at-scale.svg (needs root).
	BENCH_OPS=SESSIONS hack/bench.sh

.PHONY: bench-controller
bench-controller: control-plane ## Reconcile 100 and 500 FTPServers against the real API server; prints a table.
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh)" go run ./hack/bench-controller -n 100 -n 500

.PHONY: docs
docs: ## Regenerate docs/api.md from the API types.
	go run ./hack/apidocs api/v1alpha1 > docs/api.md

##@ Build

.PHONY: build
build: ## Build bin/ftp-operator (static, as in the image).
	CGO_ENABLED=0 go build $(GO_BUILD_FLAGS) -o bin/ftp-operator ./cmd

.PHONY: image
image: build ## Write the image IMG as an OCI archive (IMAGE_ARCHIVE), reproducibly and without Docker.
	go run ./hack/image -binary bin/ftp-operator -ref $(IMG) -o $(IMAGE_ARCHIVE)

.PHONY: pause-image
pause-image: ## Write the pod sandbox image PAUSE_IMG as an OCI archive (PAUSE_ARCHIVE), for nodes without a registry.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/pause ./hack/pause
	go run ./hack/image -pause -binary bin/pause -ref $(PAUSE_IMG) -o $(PAUSE_ARCHIVE)

# As root the demo runs a real node (containerd, runc, CNI plugins, helm for the chart); as a
# normal user the local harness, which needs none of them.
ifeq ($(shell id -u),0)
DEMO_DEPS := demo-node-deps
else
DEMO_DEPS :=
endif
DEMO_FLAGS ?=

.PHONY: demo
demo: build control-plane $(DEMO_DEPS) ## The whole product on this machine: as root a real node with the operator from its chart and two FTPServers, else the local harness; prints how to connect.
	go build -o bin/demo ./hack/demo
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh)" NODE_RUNTIME_ASSETS="$$($(NODE_RUNTIME_ASSETS_CMD))" HELM="$(HELM)" \
		bin/demo -work-dir demo-data -binary bin/ftp-operator $(DEMO_FLAGS)

.PHONY: demo-node-deps
demo-node-deps: node-runtime $(HELM)
	@hack/install-test-deps.sh

.PHONY: run
run: manifests generate ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd manager --leader-elect=false

.PHONY: docker-build
docker-build: ## Build the container image IMG (needs a Docker engine, which these machines lack).
	docker build --build-arg IMAGE=$(IMG) -t $(IMG) .

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRD into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the operator (image IMG) into the cluster of the current kubeconfig.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | kubectl apply --server-side -f -

##@ Tools

$(CONTROLLER_GEN):
	@mkdir -p $(TOOLS)
	@echo "installing controller-gen $(CONTROLLER_TOOLS_VERSION) into $(TOOLS)"
	GOBIN=$(TOOLS) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(TOOLS)/controller-gen $(CONTROLLER_GEN)

$(KUSTOMIZE):
	@mkdir -p $(TOOLS)
	@echo "installing kustomize $(KUSTOMIZE_VERSION) into $(TOOLS)"
	GOBIN=$(TOOLS) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(TOOLS)/kustomize $(KUSTOMIZE)

$(GOLANGCI_LINT):
	@mkdir -p $(TOOLS)
	@echo "building golangci-lint $(GOLANGCI_LINT_VERSION) into $(TOOLS) (a few minutes the first time)"
	GOBIN=$(TOOLS) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLS)/golangci-lint $(GOLANGCI_LINT)

$(HELM):
	@mkdir -p $(TOOLS)
	@echo "building helm $(HELM_VERSION) into $(TOOLS) (about two minutes the first time)"
	GOBIN=$(TOOLS) go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR) \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR)" \
		helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLS)/helm $(HELM)

$(PROMTOOL):
	@mkdir -p $(TOOLS)
	@echo "building promtool $(PROMETHEUS_VERSION) into $(TOOLS) (a few minutes the first time)"
	GOBIN=$(TOOLS) go install -ldflags "-X github.com/prometheus/common/version.Version=$(PROMETHEUS_RELEASE)" \
		github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION)
	mv $(TOOLS)/promtool $(PROMTOOL)
