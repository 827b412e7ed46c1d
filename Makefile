# Herald's contract: CI calls the same targets the README gives.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

.PHONY: run build test race check bench bench-full clean

## run: build and start Herald on embedded defaults (SQLite, in-process lanes) on :8080
run: build
	./bin/herald serve

## build: compile the herald binary into bin/
build:
	go build -o bin/herald ./cmd/herald

## test: start MariaDB (and Cassandra), then vet and test every module, check GOWORK=off builds
test:
	./scripts/test.sh

## race: the test command under the race detector (about 8 minutes)
race:
	GOFLAGS=-race ./scripts/test.sh

## check: formatting, vet, go.work sync, generated code
check:
	./scripts/check.sh

## bench: the short benchmark suite (a few minutes); results go to stdout
bench: build
	./scripts/bench.sh short

## bench-full: the full benchmark scenarios recorded in docs/benchmarks.md
bench-full: build
	./scripts/bench.sh full

clean:
	rm -rf bin herald-data
