package issuer

import (
	"testing"
	"time"
)

func TestAdmissionBounds(t *testing.T) {
	a := newAdmission(3, 1<<20, 2)
	for i, tc := range []struct {
		device string
		want   int
	}{
		{"cam-1", admitOK}, {"cam-1", admitOK}, {"cam-1", admitDeviceFull},
		{"cam-2", admitOK}, {"cam-3", admitQueueFull},
	} {
		if got := a.add(tc.device, 100); got != tc.want {
			t.Fatalf("add %d (%s) = %d, want %d", i, tc.device, got, tc.want)
		}
	}
	a.done("cam-1", 100)
	if got := a.add("cam-3", 100); got != admitOK {
		t.Fatalf("after a done: %d", got)
	}
	idle := a.close()
	if a.add("cam-4", 100) != admitClosed {
		t.Fatal("closed admission admits")
	}
	for _, d := range []string{"cam-1", "cam-2", "cam-3"} {
		select {
		case <-idle:
			t.Fatalf("idle with requests in flight (%s still)", d)
		default:
		}
		a.done(d, 100)
	}
	select {
	case <-idle:
	default:
		t.Fatal("not idle once every request is done")
	}
	if a.inFlight() != 0 || len(a.perDevice) != 0 {
		t.Fatalf("in flight %d, devices %v", a.inFlight(), a.perDevice)
	}
}

// The payload bytes in flight are bounded too: large requests fill the
// byte bound long before the count bound.
func TestAdmissionBoundsBytes(t *testing.T) {
	a := newAdmission(100, 40<<10, 100)
	for i, want := range []int{admitOK, admitOK, admitQueueFull} {
		if got := a.add("cam-"+string(rune('a'+i)), 16<<10); got != want {
			t.Fatalf("add %d of 16 KiB = %d, want %d", i, got, want)
		}
	}
	if got := a.add("cam-z", 60); got != admitOK {
		t.Fatalf("a small request with 8 KiB left: %d", got)
	}
	a.done("cam-a", 16<<10)
	if got := a.add("cam-c", 16<<10); got != admitOK {
		t.Fatalf("after a done: %d", got)
	}
}

// TestLimiterTellsOncePerRetryWindow: under a flood only the first
// refused request of each retry window is answered.
func TestLimiterTellsOncePerRetryWindow(t *testing.T) {
	l := newLimiter(60, 2) // one a second
	now := time.Unix(1_763_800_000, 0)
	var told, refused int
	for range 100 {
		ok, wait, tell := l.admit("cam-1", now)
		if !ok {
			refused++
			if tell {
				told++
				if wait <= 0 || wait > time.Second {
					t.Fatalf("retry after %v", wait)
				}
			}
		}
	}
	if refused != 98 || told != 1 {
		t.Fatalf("refused %d, told %d; want 98 and 1", refused, told)
	}
	now = now.Add(time.Second)
	if ok, _, _ := l.admit("cam-1", now); !ok {
		t.Fatal("refused after the refill")
	}
	if ok, _, tell := l.admit("cam-1", now); ok || !tell {
		t.Fatalf("the next refusal, in a new window: ok %v tell %v", ok, tell)
	}
}
