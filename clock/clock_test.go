package clock

import (
	"testing"
	"time"
)

func TestFakeTimersFireOnAdvance(t *testing.T) {
	f := NewFake(time.Unix(1_700_000_000, 0))
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(5 * time.Second)
	f.Advance(time.Second)
	select {
	case <-a.C():
		t.Fatal("timer a fired 1 s early")
	default:
	}
	f.Advance(time.Second)
	select {
	case <-a.C():
	default:
		t.Fatal("timer a did not fire at its deadline")
	}
	if !b.Stop() {
		t.Fatal("Stop of an armed timer reported false")
	}
	f.Advance(time.Hour)
	select {
	case <-b.C():
		t.Fatal("stopped timer fired")
	default:
	}
	if n := f.Timers(); n != 0 {
		t.Fatalf("armed timers = %d, want 0", n)
	}
	b.Reset(0)
	select {
	case <-b.C():
	default:
		t.Fatal("Reset(0) did not fire at once")
	}
}

func TestFakeWallJumpLeavesMonotonicAlone(t *testing.T) {
	wall := time.Unix(1_700_000_000, 0)
	f := NewFake(wall)
	t0 := f.Now()
	f.JumpWall(3 * time.Hour)
	f.Advance(time.Second)
	if got := f.Now().Sub(t0); got != time.Second {
		t.Fatalf("monotonic elapsed = %v, want 1s", got)
	}
	if got := f.Wall().Sub(wall); got != 3*time.Hour+time.Second {
		t.Fatalf("wall moved %v, want 3h1s", got)
	}
}
