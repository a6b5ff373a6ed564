package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"agoratokens/clock"
	"agoratokens/internal/testbroker"
)

// devConnections counts dev-1's connections in a mosquitto's log.
func devConnections(b *testbroker.Mosquitto) int {
	return strings.Count(b.Log(), " as dev-1 ")
}

// devConnected waits until b's log shows dev-1's nth connection (the
// agent may see its CONNACK before the test reads the line) and returns
// the count then.
func devConnected(b *testbroker.Mosquitto, n int) int {
	return b.WaitLogCount(" as dev-1 ", n, waitLimit)
}

// TestFailoverToTheNextBroker: with two brokers in broker.url the agent
// connects to the first; when it dies the agent dials the second after
// one backoff.initial (the backoff was reset by the good connection),
// and when that one dies in turn it goes back to the first. The loop
// runs on the fake clock, so each wait is read exactly.
func TestFailoverToTheNextBroker(t *testing.T) {
	a, b := startBroker(t), startBroker(t)
	startIssuer(t, a.URL, 3600)
	startIssuer(t, b.URL, 3600)
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	cfg := netConfig(t, netOptions{url: "[" + a.URL + ", " + b.URL + "]"})
	n := startNetAgent(t, cfg, clk)
	n.connected(t)
	n.next(t, EventToken, waitLimit)
	if devConnected(a, 1) != 1 || devConnections(b) != 0 {
		t.Fatalf("connections: first broker %d, second %d; want the first", devConnections(a), devConnections(b))
	}
	initial := cfg.Backoff.Initial
	for i, step := range []struct {
		die, to *testbroker.Mosquitto
		name    string
	}{{a, b, "second"}, {b, a, "first"}} {
		if step.to == a {
			a.Restart()
		}
		before := devConnections(step.to)
		step.die.Stop()
		n.lost(t, waitLimit)
		if d := n.wait(t); d != initial {
			t.Fatalf("step %d: wait %v after losing a good connection, want backoff.initial %v", i, d, initial)
		}
		clk.Advance(initial)
		n.connected(t)
		if got := devConnected(step.to, before+1); got != before+1 {
			t.Fatalf("step %d: the agent did not fail over to the %s broker (%d connections there, %d before)", i, step.name, got, before)
		}
		if st := n.e.Status(clk.Now()); st.Broker != "connected" {
			t.Fatalf("step %d: broker state %q after failing over", i, st.Broker)
		}
	}
}

// TestFailoverPastADeadFirstBroker: a first broker that refuses
// connections costs one failed dial and one backoff wait; the second
// is dialed next, and the agent gets its token through it.
func TestFailoverPastADeadFirstBroker(t *testing.T) {
	b := startBroker(t)
	startIssuer(t, b.URL, 3600)
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", testbroker.FreePort(t))
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	cfg := netConfig(t, netOptions{url: "[" + dead + ", " + b.URL + "]"})
	n := startNetAgent(t, cfg, clk)
	if d := n.wait(t); d != cfg.Backoff.Initial {
		t.Fatalf("wait %v after the first broker refused, want backoff.initial %v", d, cfg.Backoff.Initial)
	}
	clk.Advance(cfg.Backoff.Initial)
	n.connected(t)
	n.next(t, EventToken, waitLimit)
	if devConnections(b) != 1 {
		t.Fatalf("%d connections on the second broker, want 1", devConnections(b))
	}
}
