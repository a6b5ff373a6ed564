#!/bin/sh
# Fleet boot storm: FLEET_DEVICES simulated devices (default 2000), each
# with its own MQTT connection and credentials, ask for their tokens at
# once through mosquitto (the shipped mosquitto.conf and ACL, on loopback) and one issuer.
# Prints the connect phase, the serve phase (first request to last reply,
# replies/s, tokens/s), the total from first connect to last reply, latency
# p50/p99/max, errors and lost requests.
#
#   FLEET_DEVICES=10000 scripts/bench-fleet.sh
#
# For a fleet against a running issuer use the command itself:
#   agora-token-issuer fleet-sim --help
set -eu
cd "$(dirname "$0")/.."
command -v mosquitto >/dev/null 2>&1 || {
	echo "bench-fleet: mosquitto is not installed (make test-deps)" >&2
	exit 1
}
n=${FLEET_DEVICES:-2000}
# One descriptor per device in the simulator and in mosquitto.
ulimit -n $((n + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "fleet boot storm: $n devices, mosquitto + issuer on loopback ($(nproc) CPUs)"
FLEET_DEVICES=$n go test -run '^$' -bench '^BenchmarkFleetBootStorm$' -benchtime 1x -timeout 10m \
	./issuer/fleetsim | grep -v '^\(goos\|goarch\|pkg\|cpu\|PASS\|ok\)'
