package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Fake is a clock that moves only when told to. Its Now readings carry a
// monotonic part (they derive from a time.Now taken at creation), and its
// wall clock can be stepped apart from them with JumpWall, as NTP steps a
// board's clock after an RTC-less boot. Timers fire, in deadline order,
// during Advance. WaitTimers lets a test wait until the code under test
// is waiting on the clock before it moves it.
type Fake struct {
	mu      sync.Mutex
	now     time.Time // monotonic
	wallOff time.Duration
	timers  []*fakeTimer
	armed   chan struct{} // closed when a timer is armed; made by a waiter
}

// NewFake returns a fake clock whose wall clock reads wall.
func NewFake(wall time.Time) *Fake {
	now := time.Now()
	return &Fake{now: now, wallOff: wall.Sub(now.Round(0))}
}

// Now returns the fake monotonic time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Wall returns the fake wall-clock time.
func (f *Fake) Wall() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now.Round(0).Add(f.wallOff)
}

// JumpWall steps the wall clock by d without moving Now or any timer.
func (f *Fake) JumpWall(d time.Duration) {
	f.mu.Lock()
	f.wallOff += d
	f.mu.Unlock()
}

// Advance moves time forward by d, firing every timer that comes due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	now := f.now
	var due []*fakeTimer
	keep := f.timers[:0]
	for _, t := range f.timers {
		if !t.at.After(now) {
			due = append(due, t)
		} else {
			keep = append(keep, t)
		}
	}
	f.timers = keep
	// Ordered under the lock: a timer's owner may Reset it (writing at)
	// as soon as the lock is free.
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	f.mu.Unlock()
	for _, t := range due {
		t.fire(now)
	}
}

// Timers returns how many timers are armed.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// Pending returns how long after Now each armed timer fires, soonest
// first.
func (f *Fake) Pending() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]time.Duration, 0, len(f.timers))
	for _, t := range f.timers {
		out = append(out, t.at.Sub(f.now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// WaitTimers waits until at least n timers are armed, so that a test
// moves time only once the code under test waits on the clock. It
// returns ctx's error if ctx ends first (give it a deadline as a guard
// against a test that would otherwise hang).
func (f *Fake) WaitTimers(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		if len(f.timers) >= n {
			f.mu.Unlock()
			return nil
		}
		if f.armed == nil {
			f.armed = make(chan struct{})
		}
		armed := f.armed
		f.mu.Unlock()
		select {
		case <-armed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// NewTimer returns a timer that fires when Advance reaches now+d (at
// once if d ≤ 0).
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

type fakeTimer struct {
	f  *Fake
	c  chan time.Time
	at time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) fire(now time.Time) {
	select {
	case t.c <- now:
	default:
	}
}

// remove unarms t; the caller holds f.mu.
func (t *fakeTimer) remove() bool {
	for i, x := range t.f.timers {
		if x == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			return true
		}
	}
	return false
}

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.remove()
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	was := t.remove()
	now := t.f.now
	t.at = now.Add(d)
	if d > 0 {
		t.f.timers = append(t.f.timers, t)
		if t.f.armed != nil {
			close(t.f.armed)
			t.f.armed = nil
		}
		t.f.mu.Unlock()
		return was
	}
	t.f.mu.Unlock()
	t.fire(now)
	return was
}
