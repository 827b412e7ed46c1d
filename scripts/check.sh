#!/usr/bin/env bash
# Static checks: gofmt, go vet, go.work sync, generated templ code up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
unformatted=$(gofmt -l $(git ls-files '*.go') 2>/dev/null || true)
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; fail=1; fi
for m in $(./scripts/modules.sh); do
	(cd "$m" && go vet ./...) || fail=1
done
# go.work sync must not change any go.mod
before=$(cat go.mod */go.mod | sha256sum)
go work sync
after=$(cat go.mod */go.mod | sha256sum)
if [ "$before" != "$after" ]; then echo "go work sync changed go.mod files: commit them"; git --no-pager diff --stat; fail=1; fi
# One go directive everywhere
if [ "$(grep -h '^go ' go.work go.mod */go.mod | sort -u | wc -l)" != 1 ]; then echo "go directives differ"; grep -H '^go ' go.work go.mod */go.mod; fail=1; fi
# templ output committed and current
if git ls-files '*.templ' | grep -q .; then
	go run github.com/a-h/templ/cmd/templ@v0.3.960 generate >/dev/null
	if [ -n "$(git status --porcelain -- '*_templ.go')" ]; then echo "templ generate produced a diff: commit the generated files"; git status --porcelain -- '*_templ.go'; fail=1; fi
fi
exit $fail
