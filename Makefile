# kassa-agent build, test and measurement targets. Only Go is needed.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
CROSS   := windows/amd64 windows/386 linux/amd64 linux/arm64 linux/arm
# How many kill -9 rounds the crash targets run.
CRASH_ITERATIONS ?= 1000

.PHONY: build test demo bench crashtest fuzz lint fmt-check vet staticcheck gotest cross clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kassa-agent ./agent

# The whole gate CI runs: formatting, vet, staticcheck, race tests, cross builds.
test: fmt-check vet staticcheck gotest cross

demo: build
	./bin/kassa-agent demo

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...

# staticcheck is pinned in go.mod (go get -tool); built once for the host so the
# Windows pass analyses Windows code without running a Windows binary.
staticcheck:
	$(GO) build -o bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	bin/staticcheck ./...
	GOOS=windows bin/staticcheck ./...

lint: fmt-check vet staticcheck

gotest:
	$(GO) test -race -count=1 -timeout 15m ./...

cross:
	@set -e; for t in $(CROSS); do \
		os=$${t%/*}; arch=$${t#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		echo "build $$os/$$arch"; \
		GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o dist/kassa-agent-$$os-$$arch$$ext ./agent; \
	done

# Benchmarks whose figures the README quotes (about 6 minutes).
bench:
	$(GO) test -run '^$$' -bench 'EnqueueLatency|EnqueueThroughput|SequenceNext' -benchtime 3000x ./queue/
	$(GO) test -run '^$$' -bench 'Backlog100k' -benchtime 1x ./queue/
	$(GO) test -run '^$$' -bench 'MarkDone' -benchtime 50000x ./queue/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./device/scanner/
	$(GO) test -run '^$$' -bench 'Receipt10Items' -benchtime 100x ./fiscal/shtrih/
	$(GO) test -run '^$$' -bench 'Commit' ./payments/smartpay/
	$(GO) test -run '^$$' -bench 'ScanToCommit' -benchtime 1x ./agent/
	$(GO) test -run '^$$' -bench 'FinalToPOS' -benchtime 1x -timeout 20m ./agent/
	$(GO) test -run '^$$' -bench 'POSReceipt10Items' -benchtime 100x ./agent/
	$(GO) test -run '^$$' -bench 'NextOp|JournalPending' -benchtime 200x ./agent/internal/sale/

# Long kill -9 and fault runs of the store, the register and the payment flow.
crashtest:
	KASSA_CRASH_ITERATIONS=$(CRASH_ITERATIONS) $(GO) test -race -count=1 -timeout 60m -run '^TestCrashKill9$$' ./queue/
	KASSA_CRASH_ITERATIONS=2000 $(GO) test -race -count=1 -timeout 60m -run 'TestFaultRandomized|TestKill9MidReceipt' ./fiscal/shtrih/
	KASSA_CRASH_ITERATIONS=200 $(GO) test -race -count=1 -timeout 60m -run '^TestCrash' ./agent/

# Every fuzz target for FUZZTIME each (default 30s).
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin dist demo-data
