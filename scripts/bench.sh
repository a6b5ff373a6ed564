#!/bin/sh
# make bench: every benchmark suite of the project, each in its own script
# (scripts/bench-*.sh), run in turn. Figures are compared with the
# reference implementations inside each suite, in the same run.
set -eu
cd "$(dirname "$0")/.."
found=0
for s in scripts/bench-*.sh; do
	[ -x "$s" ] || continue
	found=1
	echo "== $s"
	"$s"
done
[ "$found" = 1 ] || { echo "no benchmark suites found" >&2; exit 1; }
