# agora-token-issuer / agora-token-agent
#
#   make demo    run issuer, broker, agents and media clients on this machine
#   make test    install what the tests need (as root), lint, run every test
#
#   make build | lint | fuzz | bench | cross | deb | clean: see README.md
#
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X agoratokens/buildinfo.Version=$(VERSION)
BIN       := bin
GOFLAGS_BUILD := -trimpath -ldflags '$(LDFLAGS)'

.PHONY: all build test test-deps test-race lint fuzz soak bench demo cross clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/agora-token-issuer ./cmd/agora-token-issuer
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/agora-token-agent ./cmd/agora-token-agent

# What the tests need from the system: mosquitto, qemu-user-static, node
# and npm, gcc, systemd-analyze, dpkg-deb. Installed when missing if we
# run as root; otherwise a message says what to install.
test-deps:
	@scripts/test-deps.sh

# gofmt, go vet, and go.mod/go.sum exactly as go mod tidy leaves them.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@out=$$($(GO) mod tidy -diff 2>&1) || { \
		echo "go.mod or go.sum is not tidy; go mod tidy would change:"; echo "$$out"; exit 1; }

# ARM builds, qemu-user test runs and Debian packages live in cross/.
include cross/cross.mk

# The tests must leave the checkout as they found it: they build and
# install into t.TempDir() or a cache outside the tree, and
# scripts/tree-unchanged.sh fails the run if git status differs after it.
# The summary lines of go test end the output: the race run goes last.
test: test-deps lint
	@scripts/tree-unchanged.sh $(MAKE) --no-print-directory test-arm test-race

test-race:
	$(GO) test -race -count=1 -timeout 15m ./...

# Every fuzz target of the module (found by scripts/fuzz.sh), FUZZTIME
# each, one after the other; a crash leaves its input in the package's
# testdata/fuzz/, a regression seed to commit with the fix.
FUZZTIME ?= 1m
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

bench:
	@scripts/bench.sh

# Ten minutes (SOAK_DURATION) of random broker restarts, issuer kills and
# network cuts against the real processes: renewals, gaps, memory, fds.
soak:
	@scripts/soak.sh

# The whole system on this machine: issuer + embedded broker, agents for
# simulated cameras and a sample media client each. Stops by itself.
DEMO_DURATION ?= 3m
DEMO_TTL      ?= 60s
DEMO_DEVICES  ?= 3
DEMO_DIR      ?= demo-run
demo: build
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/agora-media-sample ./examples/media-client
	$(GO) build -o $(BIN)/agora-token-demo ./cmd/agora-token-demo
	$(BIN)/agora-token-demo --bin $(BIN) --dir $(DEMO_DIR) --devices $(DEMO_DEVICES) \
		--duration $(DEMO_DURATION) --ttl $(DEMO_TTL)

clean:
	rm -rf $(BIN) dist demo-run
