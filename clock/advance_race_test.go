package clock

import (
	"testing"
	"time"
)

// Advance orders the timers that came due by their deadlines while their
// owners may Reset them (an engine loop woken by something else than its
// timer): under -race this must be clean. Many timers make the ordering
// take long enough for the race detector to see a Reset during it.
func TestFakeAdvanceWhileTimersReset(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	var timers []Timer
	for i := range 64 {
		timers = append(timers, f.NewTimer(time.Duration(i+1)*time.Microsecond))
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			timers[i%len(timers)].Reset(time.Duration(i%7+1) * time.Microsecond)
		}
	}()
	for range 2000 {
		f.Advance(10 * time.Microsecond)
	}
	close(stop)
	<-done
	for _, tm := range timers {
		tm.Stop()
	}
}
