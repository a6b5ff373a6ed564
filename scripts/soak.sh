#!/bin/sh
# Accelerated soak: three agents, the issuer and mosquitto as real
# processes on loopback, tokens of 10 s, and for SOAK_DURATION (default
# 10m) a random fault every 3-10 s: a mosquitto restart, an issuer
# SIGKILL, or one agent's path to the broker refused, reset, delayed or
# throttled, each for at most 3 s. Prints the renewals done, the gaps
# (seconds a camera held no valid token while the issuer was reachable:
# must be 0), and each process's memory and descriptors at the start and
# the end. docs/reliability.md explains the figures.
#
#   SOAK_DURATION=30m scripts/soak.sh
#   FAULTS_SEED=123 scripts/soak.sh       replay a run's fault schedule
set -eu
cd "$(dirname "$0")/.."
command -v mosquitto >/dev/null 2>&1 || {
	echo "soak: mosquitto is not installed (make test-deps)" >&2
	exit 1
}
d=${SOAK_DURATION:-10m}
log=${TMPDIR:-/tmp}/soak.log
echo "soak: $d of faults against real processes ($(nproc) CPUs); full log in $log"
status=0
# The test's own waits are bounded; the timeout only stops a runaway.
SOAK_DURATION=$d go test -count=1 -run '^TestSoak$' -v -timeout 3h ./e2e/faults >"$log" 2>&1 || status=$?
grep -o 'soak: .*\|fault schedule seed .*' "$log" || true
grep -A3 -- '--- FAIL\|promise was broken\|KNOWN BUG' "$log" | grep -v '^\s*[0-9]\{10\}: ' | head -40 || true
if [ "$status" -ne 0 ]; then
	echo "soak: FAILED (exit $status); see $log" >&2
else
	echo "soak: ok"
fi
exit "$status"
