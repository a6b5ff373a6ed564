//go:build race

package socket_test

import "testing"

// loadRounds: one under the race detector, which makes a round several
// times slower and whose memory says nothing about the code's (below).
const loadRounds = 1

// checkRSS leaves resident memory unchecked under the race detector: its
// shadow memory grows with every goroutine ever run (some 90 MiB a
// round here), whatever the code under test does. The ordinary and the
// ARM (make test-arm) runs check it; descriptors and goroutines are
// checked in every run.
func checkRSS(t *testing.T, levels []usage) {
	t.Helper()
	t.Logf("resident memory not checked under the race detector: %v", levels)
}
