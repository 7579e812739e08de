# tcpstate — see README.md. Run the tests as root: make test
# sudo's secure_path often lacks Go's directory: find go there too.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
CLANG ?= clang-19
BIN := bin/tcpstate
# Baked into the binary (tcpstate --version, tcpstate_build_info).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build generate check-generate test deps vet unit bench clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/tcpstate

# Regenerate the committed bpf2go output (needs clang-19, llvm-19, libbpf-dev).
generate:
	$(GO) generate ./...

# The committed BPF objects must be what the sources build to.
check-generate:
	@if command -v $(CLANG) >/dev/null; then \
		$(GO) generate ./... && git diff --exit-code -- tracer/ && echo "generated files up to date"; \
	else \
		echo "check-generate: $(CLANG) not installed, not checked (.ci/run installs it)"; \
	fi

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# Every test; the integration tests need root (they fail under CI=true
# without it, and skip otherwise). Installs what they need first. One
# package at a time: the integration tests of several packages at once
# load two cores enough to make the timing-bound ones (orphan bursts,
# TIME_WAIT churn) miss their windows.
test: deps vet check-generate manifests
	$(GO) test -count=1 -p 1 ./...

# The Kubernetes manifests, decoded strictly into the API types: a module
# of its own (deploy/validate), so that tcpstate does not depend on them.
.PHONY: manifests
manifests:
	cd deploy/validate && $(GO) vet ./... && $(GO) test -count=1 ./...

# On a fresh Debian machine as root: install what the tests need.
deps:
	@bash .ci/deps

# What tracing costs a busy host, each mode against the untraced rate in
# the same run, median of BENCH_RUNS: loopback connection churn, a real web
# server (nginx under wrk, every request a new connection), the same on
# keep-alive connections (timers re-armed by every request, no
# transitions), a process with no TCP making syscalls (dd), and churn at a
# moderate rate (2 clients) for the CPU per event. A benchmark, not a
# test. Installs nginx-light, wrk and libbpf-tools (the reference rows)
# when missing.
BENCH_WORKLOADS ?= churn http http-keepalive syscalls
BENCH_RUNS ?= 3
BENCH_MODERATE_MODES ?= json-file,life-json,metrics,floor-one-program,libbpf-tools-tcpstates
.PHONY: bench-deps
bench: build bench-deps
	$(GO) build -o bin/tcpstate-bench ./cmd/tcpstate-bench
	@for w in $(BENCH_WORKLOADS); do bin/tcpstate-bench -tcpstate $(BIN) -workload $$w -runs $(BENCH_RUNS) || exit 1; echo; done
	bin/tcpstate-bench -tcpstate $(BIN) -workload churn -conns 2 -modes $(BENCH_MODERATE_MODES) -runs $(BENCH_RUNS)

bench-deps:
	@need=""; command -v nginx >/dev/null || need="$$need nginx-light"; \
	command -v wrk >/dev/null || need="$$need wrk"; \
	[ -x /usr/sbin/tcpstates ] || need="$$need libbpf-tools"; \
	if [ -n "$$need" ]; then echo "make bench: installing$$need"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null; fi

clean:
	rm -rf bin

# Boot Debian's newest amd64 and arm64 6.1 and 6.12 kernels in QEMU and run
# the integration tests in each, and on both 6.1s the classic-tracepoint path
# (as root; see vmtest/README.md). The host kernel is make test's.
.PHONY: vmtest
vmtest:
	GO=$(GO) bash vmtest/vmtest.sh

# The container image: bin/tcpstate alone, FROM scratch (deploy/image).
# Installs docker.io and starts dockerd if needed (.ci/docker).
IMAGE ?= tcpstate:$(VERSION)
.PHONY: image
image: build
	@bash .ci/docker
	rm -rf bin/image && mkdir -p bin/image && cp $(BIN) bin/image/tcpstate
	docker build -q -t $(IMAGE) -t tcpstate:latest --build-arg VERSION=$(VERSION) -f deploy/image/Dockerfile bin/image
	@echo "$(IMAGE): $$(docker image inspect -f '{{.Size}}' $(IMAGE)) bytes"

# The image under Docker with the DaemonSet's capabilities, hostPID and
# mounts read from deploy/kubernetes (as root): TIME_WAIT followed inside,
# pods named; prints the measured CPU and memory.
.PHONY: imagetest
imagetest: image
	cd deploy/validate && GO=$(GO) TCPSTATE_IMAGE=$(IMAGE) $(GO) test -tags imagetest -count=1 -v -run '^TestImage' ./...
