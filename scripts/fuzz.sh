#!/bin/sh
# make fuzz: every fuzz target of the module (each `func FuzzXxx` in a
# _test.go file), one at a time, for FUZZTIME each, then a list of the
# targets that failed.
#
#   scripts/fuzz.sh [PACKAGE...]    default ./... (the whole module)
#   FUZZTIME=1m                     per target (go test -fuzztime: 30s, 10000x)
#   FUZZ_PARALLEL=N                 fuzzing workers per target (default GOMAXPROCS)
#
# Targets are found, not listed here: a package is asked (go test -list
# '^Fuzz') once one of its test files declares a fuzz function, so a new
# target runs without editing this script.
#
# A target that finds a crash fails, and go test writes the input into the
# package's testdata/fuzz/<Target>/. Fix the bug and commit that file: it
# becomes a seed that every plain `go test` run checks from then on.
set -u
cd "$(dirname "$0")/.."
go=${GO:-go}
fuzztime=${FUZZTIME:-1m}
[ $# -gt 0 ] || set -- ./...
root=$(pwd)

out=$(mktemp)
trap 'rm -f "$out"' EXIT

# One line per package with test files: import path, directory, files.
pkgs=$("$go" list -f '{{.ImportPath}} {{.Dir}}{{range .TestGoFiles}} {{.}}{{end}}{{range .XTestGoFiles}} {{.}}{{end}}' "$@") || {
	echo "fuzz: go list $* failed" >&2
	exit 1
}

targets=0
failed=""
while read -r pkg dir files; do
	[ -n "$files" ] || continue
	has=0
	for f in $files; do
		if grep -q '^func Fuzz' "$dir/$f"; then
			has=1
			break
		fi
	done
	[ "$has" = 1 ] || continue
	names=$("$go" test -list '^Fuzz' "$pkg" </dev/null | grep '^Fuzz') || {
		echo "fuzz: go test -list '^Fuzz' $pkg found no target (or did not build)" >&2
		failed="$failed
  $pkg: go test -list failed"
		continue
	}
	rel=${dir#"$root"/}
	for name in $names; do
		targets=$((targets + 1))
		echo "== fuzz $pkg $name for $fuzztime"
		# shellcheck disable=SC2086
		"$go" test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" \
			${FUZZ_PARALLEL:+-parallel "$FUZZ_PARALLEL"} "$pkg" </dev/null 2>&1 | tee "$out"
		# tee hides go test's status; a run that passed ends with "ok".
		if ! tail -n 1 "$out" | grep -q '^ok'; then
			seed=$(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$out" | head -n 1)
			if [ -n "$seed" ]; then
				failed="$failed
  $pkg $name: crash, input in $rel/$seed (fix the bug, then commit the file as a regression seed)"
			else
				failed="$failed
  $pkg $name: failed (see its output above)"
			fi
		fi
	done
done <<EOF
$pkgs
EOF

if [ "$targets" = 0 ]; then
	echo "fuzz: no fuzz targets in $*" >&2
	exit 1
fi
if [ -n "$failed" ]; then
	echo "fuzz: of $targets targets ($fuzztime each), these failed:$failed" >&2
	exit 1
fi
echo "fuzz: $targets targets, $fuzztime each: no crash"
