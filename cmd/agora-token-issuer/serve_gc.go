package main

import (
	"os"
	"runtime/debug"
)

// Garbage-collector settings of serve when the environment names none.
// A request allocates a few kB (most of it net/http's) and keeps none,
// so the live heap is small and the default GOGC=100 collects dozens of
// times a second under HTTP load; each cycle's stop-the-world pauses
// are where descheduled threads stretch the tail on a shared machine.
// GOGC=400 cuts the cycles about fivefold (and raised the HTTP API's
// throughput by about a third in scripts/bench-http.sh) for a heap of a
// few MB more; the memory limit keeps a large fleet's heap bounded.
const (
	serveGCPercent  = 400
	serveMemLimitMB = 1024
)

// tuneGC applies serve's GC settings unless GOGC or GOMEMLIMIT is set.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(serveMemLimitMB << 20)
	}
}
