# agora-token-issuer / agora-token-agent
#
#   make demo    run issuer, broker, agents and media clients on this machine
#   make test    install what the tests need (as root), lint, run every test
#
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X agoratokens/buildinfo.Version=$(VERSION)
BIN       := bin
GOFLAGS_BUILD := -trimpath -ldflags '$(LDFLAGS)'

.PHONY: all build test test-deps lint bench demo cross clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/agora-token-issuer ./cmd/agora-token-issuer
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/agora-token-agent ./cmd/agora-token-agent

# What the tests need from the system: mosquitto, qemu-user-static, node
# and npm, gcc, systemd-analyze, dpkg-deb. Installed when missing if we
# run as root; otherwise a message says what to install.
test-deps:
	@scripts/test-deps.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# ARM builds, qemu-user test runs and Debian packages live in cross/.
include cross/cross.mk

# The summary lines of go test end the output: the race run goes last.
test: test-deps lint test-arm
	$(GO) test -race -count=1 -timeout 15m ./...

bench:
	@scripts/bench.sh

demo:
	@echo "make demo: not ready yet (see the demo issue)"; exit 1

clean:
	rm -rf $(BIN) dist
