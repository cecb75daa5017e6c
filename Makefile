# Warden's build and test entry points. `make test` is what CI runs: it
# installs what the tests need, vets, runs every test with the race
# detector, and gives each fuzz target a short run.
GO ?= go
FUZZTIME ?= 10s
UNITFLAGS ?= -race -count=1 -timeout 30m
TESTFORMAT ?= pkgname-and-test-fails

# Tests run through gotestsum (a tool dependency in go.mod: its version is
# pinned and `go tool` builds it, nothing to install) rather than a summary
# of our own over `go test -json`: it is the widely used, maintained reader
# of that stream and follows its changes (Go 1.24's build-output events, for
# one); it prints each failure with its output, lists skipped tests with
# their reason, and ends with one line a person and CI can read:
# `DONE N tests[, N skipped][, N failures][, N errors] in T`.
# Its exit status is that of the command it runs (go test's, or with
# --raw-command hack/go-test-json.sh's), not a recount of the events.
GOTESTSUM = $(GO) tool gotestsum --format $(TESTFORMAT) --format-icons text --format-hide-empty-pkg
GOTESTJSON = env GO='$(GO)' UNITFLAGS='$(UNITFLAGS)' FUZZTIME='$(FUZZTIME)' bash hack/go-test-json.sh

.PHONY: test deps vet unit fuzz bench bench-peers demo build fmt

# Unit tests and fuzz targets in one gotestsum run: the fuzz targets run even
# when a unit test failed (hack/go-test-json.sh runs every stage, then exits
# non-zero if any failed), and one summary covers both.
test: deps vet
	$(GOTESTSUM) --raw-command -- $(GOTESTJSON) unit fuzz

deps:
	bash hack/install-deps.sh

vet:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GOTESTSUM) -- $(UNITFLAGS) ./...

# Every fuzz target in the repository (found by hack/go-test-json.sh),
# FUZZTIME each.
fuzz:
	$(GOTESTSUM) --raw-command -- $(GOTESTJSON) fuzz

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Warden side by side with fail2ban, CrowdSec (with its firewall bouncer)
# and Prometheus Alertmanager: hack/install-peers.sh installs them from
# Debian's packages (no service left running), then e2e BenchmarkPeers runs
# the same intake load and the same SSH password-guessing attack against
# each in one namespace lab, prints one table and writes bench-peers.json
# here. Not part of `make test` (about nine minutes); needs root.
# BENCH_PEERS_DURATION (30s), BENCH_PEERS_TRIALS (12), BENCH_PEERS_FAST_POLL
# (10ms) and BENCH_PEERS_SYSTEMS (warden,fail2ban,crowdsec,alertmanager,reference)
# shape it.
bench-peers:
	bash hack/install-peers.sh
	WARDEN_BENCH_PEERS=1 BENCH_PEERS_JSON='$(CURDIR)/bench-peers.json' $(GO) test -count=1 -run '^$$' -bench '^BenchmarkPeers$$' -benchtime 1x -timeout 60m -v ./e2e/

demo:
	$(GO) run ./cmd/warden demo

# The two binaries: warden (controller, CLI, demo) and warden-agent (the
# gateway agent alone, which links no vSphere simulator, lab or test code).
build:
	$(GO) build -o bin/warden ./cmd/warden
	$(GO) build -o bin/warden-agent ./cmd/warden-agent
	@ls -l bin/warden bin/warden-agent | awk '{ printf "%-18s %6.1f MiB\n", $$NF, $$5 / 1048576 }'

fmt:
	gofmt -w $$(git ls-files '*.go')
