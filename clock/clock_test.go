package clock

import (
	"context"
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

func TestFakePending(t *testing.T) {
	f := NewFake(time.Unix(1_700_000_000, 0))
	if p := f.Pending(); len(p) != 0 {
		t.Fatalf("Pending of a new clock = %v", p)
	}
	f.NewTimer(5 * time.Second)
	b := f.NewTimer(2 * time.Second)
	f.Advance(time.Second)
	if p := f.Pending(); len(p) != 2 || p[0] != time.Second || p[1] != 4*time.Second {
		t.Fatalf("Pending = %v, want [1s 4s]", p)
	}
	b.Stop()
	if p := f.Pending(); len(p) != 1 || p[0] != 4*time.Second {
		t.Fatalf("Pending after Stop = %v, want [4s]", p)
	}
}

func TestFakeWaitTimers(t *testing.T) {
	f := NewFake(time.Unix(1_700_000_000, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fired := make(chan time.Time, 1)
	go func() {
		// Code under test: waits on the clock once, then again.
		tm := f.NewTimer(time.Minute)
		fired <- <-tm.C()
		tm.Reset(time.Minute)
	}()
	if err := f.WaitTimers(ctx, 1); err != nil {
		t.Fatalf("WaitTimers(1): %v", err)
	}
	f.Advance(time.Minute)
	<-fired
	if err := f.WaitTimers(ctx, 1); err != nil {
		t.Fatalf("WaitTimers(1) for the reset timer: %v", err)
	}
	if n := f.Timers(); n != 1 {
		t.Fatalf("Timers = %d after WaitTimers(1)", n)
	}

	// Nobody arms a second timer: WaitTimers gives up with ctx.
	short, cancelShort := context.WithCancel(ctx)
	cancelShort()
	if err := f.WaitTimers(short, 2); err != context.Canceled {
		t.Fatalf("WaitTimers(2) with an ended context = %v, want context.Canceled", err)
	}
}
