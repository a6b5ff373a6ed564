package faults

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// seeded returns a random source for a fault schedule, seeded from
// FAULTS_SEED when set (to replay a run) or from the clock, and logs the
// seed.
func seeded(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FAULTS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FAULTS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("fault schedule seed %d (FAULTS_SEED=%d replays it)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// between returns a random duration in [lo, hi).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// pause lets time pass as a fault schedule says: it is the scenario's
// timing (a fault at a random moment), never a wait for a condition.
func pause(d time.Duration) {
	t := time.NewTimer(d)
	<-t.C
}
