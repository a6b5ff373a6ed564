package agent

import (
	"sync"
	"sync/atomic"
	"testing"
)

// A status published from the engine's goroutine while Run returns: close
// waits for every waiter started before it, and one started after runs on
// its caller. Under -race, a bare WaitGroup here was reported.
func TestWaitersStartAndCloseRace(t *testing.T) {
	var w waiters
	var started, done atomic.Int32
	var callers sync.WaitGroup
	release := make(chan struct{})
	for range 8 {
		callers.Add(1)
		go func() {
			defer callers.Done()
			<-release
			for range 50 {
				started.Add(1)
				w.goWait(func() { done.Add(1) })
			}
		}()
	}
	close(release)
	w.close()
	callers.Wait()
	if got, want := done.Load(), started.Load(); got != want {
		t.Fatalf("%d of %d waiters ran by the time their callers returned", got, want)
	}
}
