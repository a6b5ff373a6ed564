#!/bin/sh
# The agent's footprint, for a Pi Zero's 512 MiB and single ARMv6 core:
#   1. binary size per arch (stripped, static, as make cross builds it);
#   2. resident memory after a minute idle with its tokens in hand;
#   3. CPU time and context switches over a further idle period.
# It runs a real issuer (embedded broker) and the agent on this machine
# (amd64).
#
#   FOOTPRINT_WARMUP=60 FOOTPRINT_IDLE=60   seconds
set -eu
cd "$(dirname "$0")/.."
warmup=${FOOTPRINT_WARMUP:-60}
idle=${FOOTPRINT_IDLE:-60}
go=${GO:-go}
tmp=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

echo "-- binary size (stripped, static; make cross)"
DIST=$tmp/dist GO=$go cross/build.sh bench armv6 armv7 arm64 amd64 | grep -v issuer
echo "-- idle run (amd64, this machine)"
bin=$tmp/dist/amd64
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/agora-token-issuer" init "$tmp/issuer" --listen "127.0.0.1:$port" >/dev/null
"$bin/agora-token-issuer" device add dev-bench --config "$tmp/issuer/issuer.yaml" --out "$tmp/dev" --local >/dev/null
"$bin/agora-token-issuer" serve --config "$tmp/issuer/issuer.yaml" 2>"$tmp/issuer.log" &
pids="$!"
python3 -c 'import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close(); sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("issuer did not listen within 10s")' "$port"

start_agent() { # start_agent BINARY ARGS...: the pid in $agent, 0 if it quit within 3 s
	"$@" 2>"$tmp/agent.log" &
	agent=$!
	sleep 3
	kill -0 "$agent" 2>/dev/null || { wait "$agent" || true; agent=0; }
}
what="agora-token-agent run"
start_agent "$bin/agora-token-agent" run --config "$tmp/dev/agent.yaml"
[ "$agent" != 0 ] || { echo "agora-token-agent run quit:"; cat "$tmp/agent.log"; exit 1; }
pids="$agent $pids"

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { n += $2 } END { print n }'; }
sleep "$warmup"
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$agent/status")
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$agent/status")
threads=$(awk '/Threads/ { print $2 }' "/proc/$agent/status")
t0=$(ticks "$agent") c0=$(switches "$agent")
sleep "$idle"
t1=$(ticks "$agent") c1=$(switches "$agent")
hz=$(getconf CLK_TCK)
grep -q '"video"\|token=video\|new token' "$tmp/agent.log" && tok=yes || tok=no
echo "measured:      $what"
echo "got a token:   $tok"
mib() { awk "BEGIN { printf \"%.1f\", $1 / 1024 }"; } # KiB → MiB
echo "RSS after ${warmup}s: $(mib "$rss") MiB (peak $(mib "$hwm") MiB), $threads threads"
echo "over ${idle}s idle: CPU $(( (t1 - t0) * 1000 / hz )) ms, $((c1 - c0)) context switches"
