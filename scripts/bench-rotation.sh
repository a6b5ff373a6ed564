#!/bin/sh
# Fleet operations at scale: ROTATION_DEVICES simulated devices (default
# 1000), each with its own MQTT connection and credentials, through
# mosquitto (the shipped mosquitto.conf and ACL, on loopback) and one
# issuer with two certificates.
#
#   BenchmarkFleetRotation: the devices hold primary tokens; a campaign
#   to next at the default rate (50 devices/s), started as `rotate --to
#   next --wait` does. Prints the time until the campaign is complete,
#   the pushes a second at the broker (peak, mean) and devices pushed
#   twice (must be 0).
#   BenchmarkFleetRenewalSpread: the devices boot at once with
#   RENEWAL_TTL (default 60s) tokens and renew once at their drawn point
#   of the token's life; prints the requests a second at the broker in
#   the boot storm and in the renewal cycle (peak against mean).
#
#   ROTATION_DEVICES=10000 scripts/bench-rotation.sh
#   BENCH=Rotation scripts/bench-rotation.sh      # one of the two
set -eu
cd "$(dirname "$0")/.."
command -v mosquitto >/dev/null 2>&1 || {
	echo "bench-rotation: mosquitto is not installed (make test-deps)" >&2
	exit 1
}
n=${ROTATION_DEVICES:-1000}
bench=${BENCH:-Rotation|RenewalSpread}
# One descriptor per device in the simulator and in mosquitto.
ulimit -n $((n + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "fleet rotation and renewal spread: $n devices, mosquitto + issuer on loopback ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown))"
ROTATION_DEVICES=$n go test -run '^$' -bench "^BenchmarkFleet($bench)\$" -benchtime 1x -timeout 30m \
	./issuer/fleetsim | grep -v '^\(goos\|goarch\|pkg\|cpu\|PASS\|ok\)'
