#!/bin/sh
# Boot storm, NATS cluster beside one mosquitto, in one run: FLEET_DEVICES
# simulated devices (default 1000; `make bench` runs this default) boot at
# once spread over the three nodes of a NATS cluster running
# configs/nats/node.conf (one simulator per node's MQTT listener) with two
# issuer replicas on NATS, then the same fleet boots on one mosquitto
# (configs/mosquitto) with one issuer. Every issuer is a process of its
# own. Prints one table: total time, p50/p99 from request to token, lost,
# failed, and CPU seconds per component (each nats-server, each issuer,
# mosquitto, the simulators), with the load average before and after.
#
#   FLEET_DEVICES=10000 scripts/bench-storm-nats.sh
#   NATS_NODE_CONF=my-node.conf FLEET_DEVICES=3000 scripts/bench-storm-nats.sh
#   FLEET_REQUESTS=at-once scripts/bench-storm-nats.sh  # ask only once all are connected
#
# A 10,000-device run takes about a minute of two cores (and 10 s of
# bcrypt hashing first); docs/broker.md ("Boot storm: NATS cluster vs one
# mosquitto") has the figures.
set -eu
cd "$(dirname "$0")/.."
if ! command -v nats-server >/dev/null 2>&1; then
	echo "bench-storm-nats: skipped, nats-server is not installed (make test-deps)"
	exit 0
fi
command -v mosquitto >/dev/null 2>&1 || {
	echo "bench-storm-nats: mosquitto is not installed (make test-deps)" >&2
	exit 1
}
n=${FLEET_DEVICES:-1000}
# One descriptor per device in the simulators and in the broker serving it.
ulimit -n $((n + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
FLEET_DEVICES=$n go test -run '^$' -bench '^BenchmarkBootStormNATSvsMosquitto$' -benchtime 1x -timeout 30m \
	./e2e/ >"$out" 2>&1 || status=$?
grep -v '^\(goos\|goarch\|pkg\|cpu\|PASS\|ok\)' "$out" || true
exit "$status"
