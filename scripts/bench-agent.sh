#!/bin/sh
# The agent's benchmarks: start to first token (engine start, empty state
# dir, to the first token event, through mosquitto and a fake issuer on
# loopback; p50 and p95 in ms) and the socket server (one get round trip,
# one renewal fanned out to 1 and 32 watchers).
#
#   START_BENCHTIME=50x     iterations of StartToFirstToken
#   SOCKET_BENCHTIME=1s     benchtime of the socket benchmarks
set -eu
cd "$(dirname "$0")/.."
go=${GO:-go}
"$go" test -run '^$' -bench StartToFirstToken -benchmem \
	-benchtime "${START_BENCHTIME:-50x}" ./agent/
"$go" test -run '^$' -bench . -benchmem \
	-benchtime "${SOCKET_BENCHTIME:-1s}" ./agent/socket/
