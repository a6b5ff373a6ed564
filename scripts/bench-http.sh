#!/bin/sh
# HTTP token API under load: wrk (Debian's package) on loopback against a
# real `agora-token-issuer serve` set up by `init --http` with one API
# key, for GET /rtc/… (agora-token-service's classic endpoint) and
# POST /getToken (its recommended one, body and key from a wrk Lua
# script). Prints requests/s and the latency distribution (p50/p99)
# beside the load average: on a shared machine the figures move with it.
#
#   BENCH_HTTP_DURATION=30s BENCH_HTTP_CONNECTIONS=100 scripts/bench-http.sh
set -eu
cd "$(dirname "$0")/.."
command -v wrk >/dev/null 2>&1 || {
	echo "bench-http: wrk is not installed (apt-get install wrk)" >&2
	exit 1
}
duration=${BENCH_HTTP_DURATION:-10s}
conns=${BENCH_HTTP_CONNECTIONS:-50}
threads=${BENCH_HTTP_THREADS:-2}

tmp=$(mktemp -d)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

go build -o "$tmp/agora-token-issuer" ./cmd/agora-token-issuer
bin="$tmp/agora-token-issuer"
http="127.0.0.1:$(free_port)"
AGORA_APP_ID="" AGORA_APP_CERTIFICATE="" "$bin" init "$tmp/setup" \
	--listen "127.0.0.1:$(free_port)" --http "$http" >/dev/null 2>&1
# A key whose rate limit stays out of the way of the measurement.
key=$("$bin" apikey add bench --config "$tmp/setup/issuer.yaml" \
	--channels 'bench-*' --services rtc,rtm --rate 1000000000/min 2>/dev/null | tail -n 1)
"$bin" serve --config "$tmp/setup/issuer.yaml" 2>"$tmp/serve.log" &
pid=$!
i=0
until grep -q "http listening" "$tmp/serve.log" 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "bench-http: serve did not start" >&2; cat "$tmp/serve.log" >&2; exit 1; }
	sleep 0.1
done

cat >"$tmp/gettoken.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"tokenType":"rtc","channel":"bench-1","role":"publisher","uid":"42","expire":3600}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
EOF

summary() {
	# wrk --latency: the Requests/sec line and the 50% and 99% lines.
	awk -v name="$1" '
		/Requests\/sec/ { rps = $2 }
		$1 == "50%" { p50 = $2 }
		$1 == "99%" { p99 = $2 }
		/Non-2xx/ { errs = $NF }
		END { printf "%-22s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n", name, rps, p50, p99, (errs == "" ? 0 : errs) }'
}

echo "HTTP token API: wrk -t$threads -c$conns -d$duration on loopback ($(nproc) CPUs)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
wrk -t"$threads" -c"$conns" -d"$duration" --latency -H "Authorization: Bearer $key" \
	"http://$http/rtc/bench-1/publisher/uid/42/?expiry=3600" >"$tmp/rtc.txt"
summary "GET /rtc/..." <"$tmp/rtc.txt"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
wrk -t"$threads" -c"$conns" -d"$duration" --latency -s "$tmp/gettoken.lua" \
	"http://$http/getToken" >"$tmp/gettoken.txt"
summary "POST /getToken" <"$tmp/gettoken.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${BENCH_HTTP_VERBOSE:-}" ]; then
	cat "$tmp/rtc.txt" "$tmp/gettoken.txt"
fi
