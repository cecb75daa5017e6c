# Warden's build and test entry points. `make test` is what CI runs: it
# installs what the tests need, vets, runs every test with the race
# detector, and gives each fuzz target a short run.
GO ?= go
FUZZTIME ?= 10s

.PHONY: test deps vet unit fuzz bench demo build fmt

test: deps vet unit fuzz

deps:
	bash hack/install-deps.sh

vet:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 30m ./...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeNative$$' -fuzztime $(FUZZTIME) ./intake
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeAlertmanager$$' -fuzztime $(FUZZTIME) ./intake

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

demo:
	$(GO) run ./cmd/warden demo

build:
	$(GO) build -o bin/warden ./cmd/warden

fmt:
	gofmt -w $$(git ls-files '*.go')
