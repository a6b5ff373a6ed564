#!/bin/sh
# HTTP token API under load: wrk (Debian's package) on loopback against a
# real `agora-token-issuer serve` set up by `init --http` with one API
# key, for GET /rtc/… (agora-token-service's classic endpoint) and
# POST /getToken (its recommended one, body and key from a wrk Lua
# script). Prints requests/s, p50 and p99 (as wrk reports them: corrected
# for coordinated omission, docs/http-api.md says what that means) and
# serve's CPU time per request, beside the load average: on a shared
# machine the figures move with it.
#
#   BENCH_HTTP_DURATION=30s BENCH_HTTP_CONNECTIONS=100 scripts/bench-http.sh
#   BENCH_HTTP_RUNS=3 scripts/bench-http.sh        # each endpoint 3 times, then the medians
#   GOMAXPROCS=1 scripts/bench-http.sh             # serve inherits the environment
#   BENCH_HTTP_SERVE_CPUS=1 BENCH_HTTP_WRK_CPUS=0 scripts/bench-http.sh   # taskset lists
#   BENCH_HTTP_REFERENCE=DIR scripts/bench-http.sh # also agora-token-service, built from
#                                                  # its source checkout in DIR, same run
set -eu
cd "$(dirname "$0")/.."
command -v wrk >/dev/null 2>&1 || {
	echo "bench-http: wrk is not installed (apt-get install wrk)" >&2
	exit 1
}
duration=${BENCH_HTTP_DURATION:-10s}
conns=${BENCH_HTTP_CONNECTIONS:-50}
threads=${BENCH_HTTP_THREADS:-2}
runs=${BENCH_HTTP_RUNS:-1}
serve_cpus=${BENCH_HTTP_SERVE_CPUS:-}
wrk_cpus=${BENCH_HTTP_WRK_CPUS:-}
pin() { # pin CPUS CMD…: runs CMD on the CPUs of the taskset list CPUS, if any
	c=$1
	shift
	if [ -n "$c" ]; then taskset -c "$c" "$@"; else "$@"; fi
}

tmp=$(mktemp -d)
pid=""
ref_pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[ -n "$ref_pid" ] && kill "$ref_pid" 2>/dev/null && wait "$ref_pid" 2>/dev/null
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
if [ -n "$serve_cpus" ]; then
	taskset -c "$serve_cpus" "$bin" serve --config "$tmp/setup/issuer.yaml" 2>"$tmp/serve.log" &
else
	"$bin" serve --config "$tmp/setup/issuer.yaml" 2>"$tmp/serve.log" &
fi
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

# serve_cpu: the CPU time of the server measured ($pid) so far, in clock
# ticks (user + system).
serve_cpu() {
	awk '{ print $14 + $15 }' "/proc/$pid/stat"
}
hz=$(getconf CLK_TCK)

# summary NAME TICKS < wrk --latency output: the Requests/sec line, the
# 50% and 99% lines, and serve's CPU time per request (TICKS over the
# requests done).
summary() {
	awk -v name="$1" -v ticks="$2" -v hz="$hz" '
		/requests in/ { n = $1 }
		/Requests\/sec/ { rps = $2 }
		$1 == "50%" { p50 = $2 }
		$1 == "99%" { p99 = $2 }
		/Non-2xx/ { errs = $NF }
		END { printf "%-22s %10s req/s   p50 %8s   p99 %8s   non-2xx %s   serve CPU %5.1f us/req\n",
			name, rps, p50, p99, (errs == "" ? 0 : errs), (n > 0 ? ticks / hz * 1e6 / n : 0) }'
}

# median NAME < summary lines: the median of each column (req/s, p50 and
# p99 apart, so the three need not come from one run).
median() {
	awk -v name="$1" '
		function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
		{ n++; r[n] = $(NF-11) + 0; a[n] = ms($(NF-8)); b[n] = ms($(NF-6)); c[n] = $(NF-1) + 0 }
		function med(x,   i, j, t) {
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
			return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
		}
		END { printf "%-22s %10.0f req/s   p50 %6.2fms   p99 %6.2fms   serve CPU %5.1f us/req   (median of %d)\n",
			name, med(r), med(a), med(b), med(c), n }'
}

# bench NAME FILE WRK-ARGS…: runs wrk $runs times, prints each run and
# their median.
bench() {
	name=$1 out=$2
	shift 2
	: >"$tmp/$out.runs"
	i=0
	while [ $i -lt "$runs" ]; do
		i=$((i + 1))
		cpu0=$(serve_cpu)
		pin "$wrk_cpus" wrk -t"$threads" -c"$conns" -d"$duration" --latency "$@" >"$tmp/$out.txt"
		cpu1=$(serve_cpu)
		summary "$name" "$((cpu1 - cpu0))" <"$tmp/$out.txt" | tee -a "$tmp/$out.runs"
		echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
		[ -z "${BENCH_HTTP_VERBOSE:-}" ] || cat "$tmp/$out.txt"
	done
	[ "$runs" -eq 1 ] || median "$name" <"$tmp/$out.runs"
}

echo "HTTP token API: wrk -t$threads -c$conns -d$duration on loopback ($(nproc) CPUs)," \
	"GOMAXPROCS=${GOMAXPROCS:-default}, serve on CPUs ${serve_cpus:-any}, wrk on CPUs ${wrk_cpus:-any}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
bench "GET /rtc/..." rtc -H "Authorization: Bearer $key" "http://$http/rtc/bench-1/publisher/uid/42/?expiry=3600"
bench "POST /getToken" gettoken -s "$tmp/gettoken.lua" "http://$http/getToken"

# The reference, in the same run: agora-token-service as its README runs
# it (gin's defaults, request log to stdout, here /dev/null), no key.
ref=${BENCH_HTTP_REFERENCE:-}
[ -n "$ref" ] || exit 0
(cd "$ref" && go build -o "$tmp/agora-token-service" ./cmd/...)
ref_port=$(free_port)
app_id=$(grep '^app_id:' "$tmp/setup/issuer.yaml" | awk '{ print $2 }')
app_cert=$(tr -d '\n' <"$(ls "$tmp"/setup/*.cert | head -n 1)")
set -- env APP_ID="$app_id" APP_CERTIFICATE="$app_cert" SERVER_PORT="$ref_port" GIN_MODE=release "$tmp/agora-token-service"
if [ -n "$serve_cpus" ]; then
	taskset -c "$serve_cpus" "$@" >/dev/null 2>"$tmp/ref.log" &
else
	"$@" >/dev/null 2>"$tmp/ref.log" &
fi
ref_pid=$!
i=0
until curl -fsS "http://127.0.0.1:$ref_port/ping" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "bench-http: agora-token-service did not start" >&2; cat "$tmp/ref.log" >&2; exit 1; }
	sleep 0.1
done
kill "$pid" && wait "$pid" 2>/dev/null || true
pid=$ref_pid
bench "reference GET /rtc/..." ref-rtc "http://127.0.0.1:$ref_port/rtc/bench-1/publisher/uid/42/?expiry=3600"
bench "reference POST /getToken" ref-gettoken -s "$tmp/gettoken.lua" "http://127.0.0.1:$ref_port/getToken"
