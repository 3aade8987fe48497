# fastpath: reference eBPF datapath and benchmark/conformance harness.
# `make help` lists the targets.

SHELL := /bin/bash
GO ?= go
SUITE ?= scenarios/bench/quick.yaml
BPF_CLANG ?= clang-14
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BPF_CFLAGS ?= -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -I/usr/include/$(MULTIARCH)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
export BPF_CLANG BPF_CFLAGS

.PHONY: help deps deps-bpf deps-vm build image e2e-upstream-netpol e2e-kind generate check-generated vet test bench bench-baselines release-report compare-release conformance vm-images vm-payload kind-node-image clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

deps: ## install the Debian packages runs need (iproute2, ...) when missing
	@hack/deps.sh run

deps-bpf: ## install the BPF toolchain (clang, libbpf headers) when missing
	@hack/deps.sh bpf

build: ## build bin/fastpath and bin/fastpath-agent
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/fastpath ./cmd/fastpath
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/fastpath-agent ./cmd/fastpath-agent

generate: deps-bpf ## regenerate bpf2go output from bpf/ (commit the result)
	$(GO) generate ./datapath/... ./harness/cluster/netns

check-generated: deps-bpf ## fail when committed bpf2go output is stale
	@hack/check-generated.sh

vet: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out" >&2; exit 1; fi

test: deps deps-vm check-generated vet build ## run every test (privileged ones need root) and check nothing is left behind
	FASTPATH_REQUIRE_PRIVILEGED=1 $(GO) test -count=1 -timeout 40m ./...
	@hack/check-leftovers.sh

# PROVIDER=kind runs the suite on a kind cluster (needs: bin/fastpath
# host-setup docker, make kind-node-image); the default is the suite's
# (netns).
PROVIDER ?=
bench: deps build $(if $(filter kind,$(PROVIDER)),image) ## run the benchmark suite (SUITE=...) on the netns provider, or PROVIDER=kind
	./bin/fastpath bench --suite $(SUITE) $(if $(PROVIDER),--provider $(PROVIDER))

e2e-upstream-netpol: image ## run the upstream Kubernetes Netpol e2e suite against the agent on kind (SCTP skipped: no SCTP sockets here)
	./bin/fastpath e2e-upstream --report-dir reports/e2e-upstream-netpol

# E2E_LABELS selects the features of make e2e-kind (e2e-framework's
# --labels, key=value,...); empty: every feature. e2e/kind/doc.go lists
# the labels.
E2E_LABELS ?= tier=smoke
E2E_TIMEOUT ?= 60m
e2e-kind: image ## e2e-framework suites on one kind cluster: conformance cases and bench scenarios as features (E2E_LABELS=tier=smoke; suite=conformance for the whole corpus)
	$(GO) test -tags e2e ./e2e/kind -count=1 -timeout $(E2E_TIMEOUT) -v -args $(if $(E2E_LABELS),--labels='$(E2E_LABELS)')

image: build ## build the agent images: FROM scratch (static fastpath-agent, fastpath-cni and fastpath in bin/image), and the iptables datapath's on the kind node rootfs
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/image/fastpath-agent ./cmd/fastpath-agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/image/fastpath-cni ./cmd/fastpath-cni
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/image/fastpath ./cmd/fastpath
	./bin/fastpath image --bin-dir bin/image

bench-baselines: deps build ## none vs ebpf vs iptables vs the sidecar proxy (scenarios/bench/baselines.yaml)
	./bin/fastpath bench --suite scenarios/bench/baselines.yaml

release-report: deps build ## run the benchmark suite and keep its report as reports/releases/$(VERSION)/
	@test "$(origin VERSION)" = "command line" || { echo "usage: make release-report VERSION=x.y.z" >&2; exit 2; }
	@test ! -e reports/releases/$(VERSION) || { echo "reports/releases/$(VERSION) exists: a release report is never overwritten" >&2; exit 2; }
	./bin/fastpath bench --suite $(SUITE) --run-dir reports/releases/$(VERSION)

compare-release: build ## compare reports/runs/latest with the newest release report (LAST=version to pick another)
	@last="$(LAST)"; [ -n "$$last" ] || last=$$(ls reports/releases 2>/dev/null | sort -V | tail -n 1); \
	test -n "$$last" || { echo "no release report under reports/releases (make release-report VERSION=...)" >&2; exit 2; }; \
	echo "comparing reports/releases/$$last with reports/runs/latest"; \
	./bin/fastpath compare reports/releases/$$last/report.json reports/runs/latest/report.json --html reports/runs/latest/compare.html

# KERNELS selects kernels from vm-images/kernels.yaml for the matrix,
# e.g. KERNELS="5.10 6.1 6.12 host"; MATCH limits the conformance cases.
KERNELS ?=
MATCH ?=
conformance: deps build ## run the conformance corpus (model, ebpf, iptables; the Services cases with XDP NodePort too); with KERNELS="5.10 6.1 6.12 host": the kernel matrix
	@if [ -n "$(KERNELS)" ]; then \
	  $(MAKE) --no-print-directory deps-vm vm-payload && \
	  ./bin/fastpath conformance matrix --kernels "$(KERNELS)" $(if $(MATCH),--match '$(MATCH)'); \
	else \
	  ./bin/fastpath conformance run --cases scenarios/conformance --datapath model $(if $(MATCH),--match '$(MATCH)') && \
	  ./bin/fastpath conformance run --cases scenarios/conformance --datapath ebpf $(if $(MATCH),--match '$(MATCH)') && \
	  ./bin/fastpath conformance run --cases scenarios/conformance --datapath iptables $(if $(MATCH),--match '$(MATCH)') && \
	  ./bin/fastpath conformance run --cases scenarios/conformance --datapath ebpf+xdp-nodeport --match '$(or $(MATCH),services/)'; \
	fi

deps-vm: ## install what the kernel matrix needs (qemu, xz, zstd) when missing
	@hack/deps.sh vm

kind-node-image: build ## build the kind node image offline (needs: bin/fastpath host-setup docker)
	./bin/fastpath kind-node-image

vm-images: deps-vm build ## download the kernels of vm-images/kernels.yaml (KERNELS=... for some) into the cache
	./bin/fastpath vm-images $(if $(KERNELS),--kernels "$(KERNELS)")

clean: build ## remove everything runs left behind, and build output
	./bin/fastpath clean
	rm -rf bin

# Payload of the VM images: static binaries and test binaries of the
# packages whose tests touch the kernel.
VM_TEST_PKGS ?= datapath/lxc datapath/attach datapath/agent datapath/features
vm-payload: ## build the static binaries and test binaries the VM images carry (bin/vm)
	rm -rf bin/vm && mkdir -p bin/vm/bin bin/vm/tests
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/vm/bin/fastpath ./cmd/fastpath
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/vm/bin/fastpath-agent ./cmd/fastpath-agent
	CGO_ENABLED=0 $(GO) build -o bin/vm/bin/fastpath-vminit ./cmd/fastpath-vminit
	CGO_ENABLED=0 $(GO) build -o bin/vm/bin/test2json cmd/test2json
	for p in $(VM_TEST_PKGS); do CGO_ENABLED=0 $(GO) test -c -o bin/vm/tests/$$(echo $$p | tr / _).test ./$$p || exit 1; done
