//go:build !race

package socket_test

import "testing"

// Resident-memory bounds of TestThousandClients, in KiB. The first round
// may grow the process by what the runtime keeps once it ran thousands
// of goroutines and connections (6–11 MiB measured on amd64 and under
// qemu-user for armv6/arm64); the second must not grow it past noise
// (under 1 MiB measured). Leaking 4 KiB or one goroutine per connection
// grows the second round by 5–7 MiB.
const (
	rssWarmupKiB = 48 << 10
	rssRoundKiB  = 4 << 10
)

// loadRounds: two, so that the second shows whether a round leaks.
const loadRounds = 2

// checkRSS checks the resident memory before the load test (levels[0]),
// after its first round and after its second.
func checkRSS(t *testing.T, levels []usage) {
	t.Helper()
	before, mid, after := levels[0], levels[1], levels[2]
	if mid.rssKiB > before.rssKiB+rssWarmupKiB {
		t.Errorf("resident memory %d KiB after the first round, was %d KiB: more than %d KiB of growth",
			mid.rssKiB, before.rssKiB, rssWarmupKiB)
	}
	if after.rssKiB > mid.rssKiB+rssRoundKiB {
		t.Errorf("resident memory %d KiB after the second round, %d KiB after the first: a round of %d connections leaks more than %d KiB",
			after.rssKiB, mid.rssKiB, loadConns, rssRoundKiB)
	}
}
