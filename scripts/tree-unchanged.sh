#!/bin/sh
# Runs a command (make test runs the test suites through it) and fails if
# the command left the checkout different: tests build, install and write
# into t.TempDir() or a cache outside the tree, never into the checkout.
#
#   scripts/tree-unchanged.sh COMMAND [ARG...]
#
# What it compares is `git status --porcelain --ignored` before and after,
# so a developer's own uncommitted edits (there before the run) do not
# count, and ignored paths (bin/, node_modules/) do: ignoring a path a
# test writes would otherwise hide it. It cannot see a test that rewrites
# a file that was already modified, or that creates something and removes
# it again. Outside a git checkout it only runs the command.
set -u
cd "$(dirname "$0")/.."
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	exec "$@"
fi
before=$(mktemp)
after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
git status --porcelain --ignored >"$before"
"$@"
status=$?
git status --porcelain --ignored >"$after"
if ! cmp -s "$before" "$after"; then
	echo "the tests changed the checkout (git status --porcelain --ignored, - before, + after):" >&2
	diff "$before" "$after" | sed -n 's/^< /  - /p; s/^> /  + /p' >&2
	echo "a test must write into t.TempDir() or a cache outside the tree" >&2
	[ "$status" != 0 ] || status=1
fi
exit "$status"
