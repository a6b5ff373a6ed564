#!/bin/sh
# AccessToken2 codec benchmarks: ours beside go-tokenbuilder v1.3.0 in the
# same run. Prints ns/op, B/op and allocs/op (median of COUNT runs) and
# the speed-up of ours over the reference. Targets: build >= 10x faster
# than BuildTokenWithUid with <= 2 allocs per token; parse >= 5x faster.
# Byte-identical output is checked by the tests (TestGoTokenBuilder*).
set -eu
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
BENCHTIME=${BENCHTIME:-1s}
out=$(go test ./accesstoken -run '^$' -bench '^Benchmark(Build|Parse)$' -benchmem \
	-count "$COUNT" -benchtime "$BENCHTIME")
printf '%s\n' "$out" | grep -E '^(goos|goarch|cpu):' || true
printf '%s\n' "$out" | awk '
/^Benchmark/ && /ns\/op/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
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
	printf "%-44s %12s %10s %10s\n", "benchmark", "ns/op", "B/op", "allocs/op"
	for (i = 1; i <= n; i++) {
		m[order[i]] = median(ns[order[i]])
		printf "%-44s %12.0f %10s %10s\n", order[i], m[order[i]], by[order[i]], al[order[i]]
	}
	rb = m["Build/go-tokenbuilder/BuildTokenWithUid"] / m["Build/ours/Builder.RTCWithUID"]
	rt = m["Build/go-tokenbuilder/BuildTokenWithUid"] / m["Build/ours/Token.Build"]
	rp = m["Parse/go-tokenbuilder/Parse"] / m["Parse/ours/Parse"]
	a = al["Build/ours/Builder.RTCWithUID"]
	printf "\nbuild: ours (Builder.RTCWithUID) is %.1fx faster than go-tokenbuilder BuildTokenWithUid (target >= 10x: %s), %s allocs/token (target <= 2: %s)\n", rb, (rb >= 10 ? "ok" : "MISSED"), a, (a <= 2 ? "ok" : "MISSED")
	printf "build: ours (Token.Build) is %.1fx faster\n", rt
	printf "parse: ours is %.1fx faster than go-tokenbuilder Parse (target >= 5x: %s)\n", rp, (rp >= 5 ? "ok" : "MISSED")
}'
