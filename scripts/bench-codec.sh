#!/bin/sh
# AccessToken2 codec benchmarks: ours beside go-tokenbuilder v1.3.0 and
# beside the bare HMAC chain (the three HMAC-SHA256 every signer must
# compute), all in the same run, so that the ratios hold on a loaded or
# different machine even when the absolute figures do not. Prints ns/op,
# B/op, allocs/op (median of COUNT runs), token lengths and the ratios
# against their targets:
#   build <= 3x the HMAC chain, >= 20x faster than BuildTokenWithUid,
#   <= 1 alloc per token, token <= 5% longer than go-tokenbuilder's;
#   parse >= 5x faster than go-tokenbuilder's Parse, parse + verify >= 3x.
# Payload equality with the references is checked by the tests
# (TestConformanceVectors, TestGoTokenBuilder*, the npm oracle). Then the
# issuer's signing path per request, step by step.
set -eu
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
BENCHTIME=${BENCHTIME:-1s}
# COUNT rounds of every benchmark once, rather than -count (which repeats
# each benchmark before the next): on a loaded machine the load then falls
# alike on the benchmarks a ratio compares.
out=$(for _ in $(seq "$COUNT"); do
	go test ./accesstoken -run '^$' -bench '^Benchmark(Build|Parse)$' -benchmem \
		-count 1 -benchtime "$BENCHTIME"
done)
printf '%s\n' "$out" | grep -E '^(goos|goarch|cpu):' | awk '!seen[$0]++' || true
printf '%s\n' "$out" | awk '
/^Benchmark/ && /ns\/op/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	for (i = 2; i < NF; i++) {
		if ($(i+1) == "ns/op") ns[name] = ns[name] " " $i
		if ($(i+1) == "B/op") by[name] = $i
		if ($(i+1) == "allocs/op") al[name] = $i
		if ($(i+1) == "chars/token") ch[name] = $i
	}
	if (!(name in seen)) { seen[name] = 1; order[++n] = name }
}
function median(list,   a, k, i, j, t) {
	k = split(list, a, " ")
	for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return a[int((k + 1) / 2)]
}
function verdict(ok) { return ok ? "ok" : "MISSED" }
END {
	printf "%-44s %12s %10s %10s %8s\n", "benchmark", "ns/op", "B/op", "allocs/op", "chars"
	for (i = 1; i <= n; i++) {
		m[order[i]] = median(ns[order[i]])
		printf "%-44s %12.0f %10s %10s %8s\n", order[i], m[order[i]], by[order[i]], al[order[i]], ch[order[i]]
	}
	ours = "Build/ours/Builder.RTCWithUID"; ref = "Build/go-tokenbuilder/BuildTokenWithUid"
	rf = m[ours] / m["Build/floor/HMAC-SHA256x3"]
	rb = m[ref] / m[ours]
	rt = m[ref] / m["Build/ours/Token.Build"]
	a = al[ours]
	rl = ch[ours] / ch[ref]
	rp = m["Parse/go-tokenbuilder/Parse"] / m["Parse/ours/Parse"]
	rv = m["Parse/go-tokenbuilder/Parse"] / m["Parse/ours/Parse+Verify"]
	printf "\n"
	printf "build: Builder.RTCWithUID takes %.1fx the bare HMAC chain (target <= 3x: %s)\n", rf, verdict(rf <= 3)
	printf "build: %.1fx faster than go-tokenbuilder BuildTokenWithUid (target >= 20x: %s); Token.Build %.1fx\n", rb, verdict(rb >= 20), rt
	printf "build: %s allocs/token (target <= 1: %s)\n", a, verdict(a <= 1)
	printf "build: token %s chars, go-tokenbuilder %s: %.3fx (target <= 1.05x: %s)\n", ch[ours], ch[ref], rl, verdict(rl <= 1.05)
	printf "parse: %.1fx faster than go-tokenbuilder Parse (target >= 5x: %s)\n", rp, verdict(rp >= 5)
	printf "parse+verify: %.1fx faster than go-tokenbuilder Parse (target >= 3x: %s)\n", rv, verdict(rv >= 3)
}'

# The issuer's signing path per request (two tokens), step by step: what
# the HTTP and MQTT figures of the other suites are built on.
echo
echo "issuer signing path, one request for two tokens (issuer/sign_bench_test.go):"
for _ in $(seq "$COUNT"); do
	go test ./issuer -run '^$' -bench '^BenchmarkSignRequest$' -benchmem \
		-count 1 -benchtime "$BENCHTIME"
done | awk '
/^Benchmark/ && /ns\/op/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkSignRequest\//, "", name)
	for (i = 2; i < NF; i++) {
		if ($(i+1) == "ns/op") ns[name] = ns[name] " " $i
		if ($(i+1) == "B/op") by[name] = $i
		if ($(i+1) == "allocs/op") al[name] = $i
	}
	if (!(name in seen)) { seen[name] = 1; order[++n] = name }
}
function median(list,   a, k, i, j, t) {
	k = split(list, a, " ")
	for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return a[int((k + 1) / 2)]
}
END {
	printf "%-44s %12s %10s %10s\n", "step", "ns/op", "B/op", "allocs/op"
	for (i = 1; i <= n; i++) printf "%-44s %12.0f %10s %10s\n", order[i], median(ns[order[i]]), by[order[i]], al[order[i]]
}'
