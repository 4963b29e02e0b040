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

IMG ?= ghcr.io/kubeftp/ftp-operator:dev
GO_TEST_FLAGS ?= -count=1

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

.PHONY: verify
verify: $(CONTROLLER_GEN) $(KUSTOMIZE) ## Fail when generated files drift from the code, gofmt finds work, or a kustomization does not build.
	CONTROLLER_GEN=$(CONTROLLER_GEN) hack/verify-generated.sh
	@for k in config/default config/samples; do $(KUSTOMIZE) build $$k >/dev/null || { echo "verify: kustomize build $$k failed" >&2; exit 1; }; done
	@echo "verify: config/default and config/samples build with kustomize"

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files -co --exclude-standard '*.go')

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: control-plane
control-plane: ## Build (first time, ~10 min) or reuse kube-apiserver and etcd for envtest.
	@hack/control-plane.sh >/dev/null

.PHONY: test
test: verify vet control-plane ## Run all tests against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh)" go test $(GO_TEST_FLAGS) ./...

.PHONY: bench-controller
bench-controller: control-plane ## Reconcile 100 and 500 FTPServers against the real API server; prints a table.
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh)" go run ./hack/bench-controller -n 100 -n 500

.PHONY: docs
docs: ## Regenerate docs/api.md from the API types.
	go run ./hack/apidocs api/v1alpha1 > docs/api.md

##@ Build

.PHONY: build
build: ## Build bin/ftp-operator.
	go build -trimpath -o bin/ftp-operator ./cmd

.PHONY: demo
demo: build ## Local demo: an FTP server on 127.0.0.1:2121 serving ./demo-data (user demo, password demo).
	hack/demo.sh

.PHONY: run
run: manifests generate ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd manager --leader-elect=false

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

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
