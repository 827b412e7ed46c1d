#!/usr/bin/env bash
# Prints the directory of every module in go.work, relative to the repository root.
cd "$(dirname "$0")/.." && go list -m -f '{{.Dir}}' | sed "s#^$(pwd)#.#"
