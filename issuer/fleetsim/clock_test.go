package fleetsim

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"agoratokens/clock"
)

// armClock is a fake clock that reports every timer made on it.
type armClock struct {
	*clock.Fake
	armed chan time.Duration
}

func (c armClock) NewTimer(d time.Duration) clock.Timer {
	t := c.Fake.NewTimer(d)
	c.armed <- d
	return t
}

// The wait for replies ends on the injected clock: with nobody answering
// and an hour's timeout, the run ends as soon as the clock is moved an
// hour, and every request counts as lost.
func TestTimeoutOnInjectedClock(t *testing.T) {
	seed := bytes.Repeat([]byte{5}, seedBytes)
	creds := filepath.Join(t.TempDir(), "devices.yaml")
	names := simNames(3)
	if err := Register(creds, FormatIssuer, seed, names); err != nil {
		t.Fatal(err)
	}
	url := startBroker(t, creds)
	clk := armClock{clock.NewFake(time.Date(2025, 11, 22, 8, 0, 0, 0, time.UTC)), make(chan time.Duration, 4)}
	sim, err := New(Config{BrokerURL: url, Devices: 3, Seed: seed, Timeout: time.Hour, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		res *Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := sim.Run(context.Background())
		done <- result{res, err}
	}()
	select {
	case d := <-clk.armed:
		if d != time.Hour {
			t.Fatalf("timer of %v, want the timeout", d)
		}
	case r := <-done:
		t.Fatalf("run ended before waiting for replies: %+v %v", r.res, r.err)
	case <-time.After(time.Minute):
		t.Fatal("no timer armed")
	}
	clk.Advance(time.Hour)
	select {
	case r := <-done:
		if r.err != nil || r.res.Requests != 3 || r.res.Lost != 3 {
			t.Fatalf("result %+v, err %v: want 3 requests, all lost", r.res, r.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not end when the injected clock passed the timeout")
	}
}
