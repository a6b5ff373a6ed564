package agent

import (
	"testing"
	"time"

	"agoratokens/clock"
)

// TestReconnectBackoffResetsAfterGoodConnection: the reconnect wait grows
// within one outage but starts again from backoff.initial after every
// connection that worked (paho's own reconnect never reset it: 0.6 s
// outages were followed by 8 s and 16 s waits). The loop runs on the fake
// clock, so each wait is read exactly and fires when the test says;
// mochi is restarted as after a crash.
func TestReconnectBackoffResetsAfterGoodConnection(t *testing.T) {
	b := mochiBroker(t)
	startIssuer(t, b.URL, 3600)
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	cfg := netConfig(t, netOptions{url: b.URL, password: b.Secret("dev-1")})
	n := startNetAgent(t, cfg, clk)
	n.connected(t)
	n.next(t, EventToken, waitLimit)
	initial := cfg.Backoff.Initial
	for outage := range 4 {
		b.Stop()
		n.lost(t, waitLimit)
		d := n.wait(t)
		if d != initial {
			t.Fatalf("outage %d: first wait %v after a good connection, want backoff.initial %v", outage, d, initial)
		}
		// Within the outage the wait grows.
		for _, want := range []time.Duration{2 * initial, 4 * initial} {
			clk.Advance(d)
			if d = n.wait(t); d != want {
				t.Fatalf("outage %d: wait %v after a failed dial, want %v", outage, d, want)
			}
		}
		b.Restart()
		clk.Advance(d)
		n.connected(t)
		if st := n.e.Status(clk.Now()); st.Broker != "connected" {
			t.Fatalf("outage %d: broker state %q after reconnecting", outage, st.Broker)
		}
	}
}

// TestReconnectDelayDoesNotGrowAcrossOutages is the same on the real
// clock against mosquitto, as a device sees it: each time the broker
// comes back the agent is reconnected within a few initial backoffs, not
// after a wait that doubled with every outage.
func TestReconnectDelayDoesNotGrowAcrossOutages(t *testing.T) {
	b := startBroker(t)
	startIssuer(t, b.URL, 3600)
	cfg := netConfig(t, netOptions{url: b.URL, backoff: "{initial: 100ms, max: 30s, jitter: 0}"})
	n := startNetAgent(t, cfg, clock.Real())
	n.connected(t)
	n.next(t, EventToken, waitLimit)
	// Paho's doubling reached 1.4 s, 3.4 s and 7.4 s at the third to fifth
	// outage; the agent's own backoff stays near initial (100, 200, 400 ms
	// while the broker restarts). The bound is far from both.
	const bound = 5 * time.Second
	for outage := range 6 {
		b.Stop()
		n.lost(t, waitLimit)
		b.Restart()
		back := time.Now()
		up := n.connected(t)
		took := up.Sub(back)
		t.Logf("outage %d: broker back -> reconnected in %v", outage, took.Round(time.Millisecond))
		if took > bound {
			t.Fatalf("outage %d: reconnected %v after the broker was back, want under %v", outage, took, bound)
		}
	}
}

// restartable is a test broker the agent and the fake issuer log in to.
type restartable struct {
	url, password string
	stop, restart func()
}

func capBrokers(t *testing.T) map[string]func() restartable {
	return map[string]func() restartable{
		"mosquitto": func() restartable {
			b := startBroker(t)
			return restartable{b.URL, devPassword, b.Stop, b.Restart}
		},
		"mochi": func() restartable { // restarted as after a crash: no session kept
			b := mochiBroker(t)
			return restartable{b.URL, b.Secret("dev-1"), b.Stop, b.Restart}
		},
	}
}

// TestReconnectCappedByTokenDeadline: a broker down longer than the token
// can afford. The backoff has grown to 16 s when the renewal falls due;
// the agent dials at once, then waits no more than a quarter of what the
// token has left, so once the broker is back it reconnects and renews
// well before expiry (paho's growing backoff left it disconnected past
// expiry: 15 s after mosquitto was back, 11 s after a 5 s restart of the
// embedded broker). On the fake clock: every wait is read and fired
// exactly.
func TestReconnectCappedByTokenDeadline(t *testing.T) {
	for name, start := range capBrokers(t) {
		t.Run(name, func(t *testing.T) {
			b := start()
			iss := startIssuer(t, b.url, 40) // renewal 20 s after receipt (half the lifetime)
			clk := clock.NewFake(time.Unix(1_763_800_000, 0))
			cfg := netConfig(t, netOptions{url: b.url, password: b.password, backoff: "{initial: 1s, max: 60s, jitter: 0}"})
			n := startNetAgent(t, cfg, clk)
			n.connected(t)
			tok := n.next(t, EventToken, waitLimit).Token
			b.stop()
			n.lost(t, waitLimit)
			elapsed := time.Duration(0)
			for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
				d := n.wait(t)
				if d != want {
					t.Fatalf("wait %v during the outage, want %v", d, want)
				}
				clk.Advance(d)
				elapsed += d
			}
			if d := n.wait(t); d != 16*time.Second {
				t.Fatalf("wait %v, want 16s", d)
			}
			// 15 s into the outage; the renewal falls due at 20 s, mid-wait.
			clk.Advance(20*time.Second - elapsed)
			n.next(t, EventWillExpire, waitLimit)
			// The engine's held renewal wakes the loop: a dial at once
			// (the broker is still down), then a wait the token affords.
			d := n.wait(t)
			left := tok.ExpiresIn(clk.Now())
			if d > left/4 || d < cfg.Backoff.Initial {
				t.Fatalf("wait %v with the token %v from expiry, want at most a quarter of it", d, left)
			}
			b.restart()
			iss.resubscribed(t) // so that the request finds it
			clk.Advance(d)
			n.connected(t)
			ev := n.next(t, EventToken, waitLimit) // fails on an expired event
			if !tok.Valid(ev.At) {
				t.Fatal("renewed after the token expired")
			}
			t.Logf("reconnected and renewed %v before expiry (fake clock)", tok.ExpiresIn(ev.At))
		})
	}
}
