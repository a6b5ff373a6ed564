// Package clock is the one time source of the agent, the socket server,
// the board and the issuer: the real clock in production and a fake one
// that tests move by hand, so that no test sleeps and every timer fires
// when the test says.
package clock

import "time"

// Clock tells the time and makes timers. Now's readings carry Go's
// monotonic part (as time.Now's do), so durations between them are immune
// to wall-clock steps; Wall is the wall clock, for the rare decision that
// needs calendar time (a token's age after a reboot).
type Clock interface {
	// Now is the current time, with a monotonic reading. Use it for
	// scheduling; do not read its wall part.
	Now() time.Time
	// Wall is the current wall-clock time (may jump when NTP steps it).
	Wall() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer, like *time.Timer.
type Timer interface {
	// C delivers the time once the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
	// Reset makes the timer fire after d, as time.Timer.Reset does.
	Reset(d time.Duration) bool
}

// Real returns the system clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time  { return time.Now() }
func (realClock) Wall() time.Time { return time.Now().Round(0) }
func (realClock) NewTimer(d time.Duration) Timer {
	return realTimer{time.NewTimer(d)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
