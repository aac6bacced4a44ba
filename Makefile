# dockmaster: `make run` serves with embedded defaults; `make test` installs
# what is missing (Docker, registry, busybox, git, chromium) and runs every test.

GO       ?= go
BIN      := bin/dockmaster
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
DATE     ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
# Packages with concurrency run under the race detector in `make test`.
RACE_PKGS := ./internal/... ./webhooks/... ./pipeline/... ./deployer/...
FUZZTIME ?= 3s
# The PostgreSQL that scripts/setup.sh starts; store tests run on it too.
export DOCKMASTER_TEST_POSTGRES ?= postgres://dockmaster:dockmaster@127.0.0.1:5432/dockmaster?sslmode=disable

.PHONY: build run test test-short bench lint fuzz setup e2e clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/dockmaster

run: build
	./$(BIN) serve

setup:
	bash scripts/setup.sh

# The race detector runs over the unit tests of the packages with
# concurrency; then every test runs on real Docker daemons, a registry and
# chromium. The second run is CGO_ENABLED=0 (nothing needs cgo) so it shares
# its build cache with the static binaries the end-to-end tests build.
test: setup lint
	$(GO) test -race -short -count=1 -timeout 15m $(RACE_PKGS)
	CGO_ENABLED=0 DOCKMASTER_REQUIRE_DOCKER=1 $(GO) test -count=1 -timeout 25m ./...
	$(MAKE) fuzz FUZZTIME=3000x

test-short: lint
	$(GO) test -short -count=1 ./...

e2e: setup
	$(GO) test -count=1 -timeout 15m -v ./test/...

bench: setup
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Each fuzz target runs for FUZZTIME (make fuzz FUZZTIME=5m for a long run).
# make test gives a count (3000x), not a time: with a short -fuzztime a
# worker cut off by the deadline fails the run with "context deadline
# exceeded" (FuzzLoad did in CI).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
