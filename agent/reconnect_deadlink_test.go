package agent

import (
	"testing"
	"time"

	"agoratokens/clock"
	"agoratokens/internal/faultproxy"
	"agoratokens/internal/testbroker"
)

// startProxy puts a fault proxy between the agent and b.
func startProxy(t *testing.T, b *testbroker.Mosquitto) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("proxy close: %v", err)
		}
	})
	return p
}

// TestReconnectDeadLinkRedialedOnRequestTimeout: the path to the broker
// dies without a RST while a renewal falls due. The request gets no
// PUBACK within request_timeout, so the agent drops the connection and
// dials a new one; once the path is back the token is renewed before it
// expires. The keepalive (60 s here: renew_before is long) would have
// noticed far too late, and before the fix nothing else did: the token
// expired 50 s after the path was back.
func TestReconnectDeadLinkRedialedOnRequestTimeout(t *testing.T) {
	b := startBroker(t)
	startIssuer(t, b.URL, 10) // renewal 5 s after receipt
	p := startProxy(t, b)
	cfg := netConfig(t, netOptions{url: "tcp://" + p.Addr(), renewBefore: "3m", requestTimeout: "1s"})
	if ka := keepAliveFor(&cfg); ka != time.Minute {
		t.Fatalf("keepalive %v, want 1m (the request timeout must be what notices)", ka)
	}
	n := startNetAgent(t, cfg, clock.Real())
	n.connected(t)
	tok := n.next(t, EventToken, waitLimit).Token
	p.Blackhole()
	n.next(t, EventWillExpire, waitLimit) // the renewal goes into the dead link
	// The path comes back, but the old connection stays dead, as after
	// a NAT entry timed out.
	p.Restore()
	back := time.Now()
	n.lost(t, waitLimit)
	up := n.connected(t)
	ev := n.next(t, EventToken, tok.ExpiresIn(time.Now())+time.Second) // fails on an expired event
	if !tok.Valid(ev.At) {
		t.Fatal("renewed after the token expired")
	}
	t.Logf("path back -> reconnected %v, renewed %v, %v before expiry",
		up.Sub(back).Round(time.Millisecond), time.Since(back).Round(time.Millisecond),
		tok.ExpiresIn(ev.At).Round(time.Millisecond))
}

// TestReconnectDeadLinkStillDeadWhenRedialed: the path is still dead when
// the agent redials; each dial times out, and the waits between them stay
// within what the token affords, so the first dial after the path is back
// reconnects and renews in time.
func TestReconnectDeadLinkStillDeadWhenRedialed(t *testing.T) {
	b := startBroker(t)
	startIssuer(t, b.URL, 16) // renewal 8 s after receipt
	p := startProxy(t, b)
	cfg := netConfig(t, netOptions{url: "tcp://" + p.Addr(), renewBefore: "3m", requestTimeout: "1s",
		backoff: "{initial: 100ms, max: 30s, jitter: 0}"})
	n := startNetAgent(t, cfg, clock.Real())
	n.connected(t)
	tok := n.next(t, EventToken, waitLimit).Token
	p.Blackhole()
	n.next(t, EventWillExpire, waitLimit)
	n.lost(t, waitLimit) // the request timed out: dropped
	if d := n.wait(t); d != 0 {
		t.Fatalf("redial after %v, want at once", d)
	}
	// That dial goes into the blackhole and times out (no CONNACK
	// within request_timeout); the wait after it is what the token
	// affords at most.
	left := tok.ExpiresIn(time.Now())
	if d := n.wait(t); d > max(left/4, cfg.Backoff.Initial) {
		t.Fatalf("wait %v after a failed dial with the token %v from expiry", d, left)
	}
	p.Restore()
	back := time.Now()
	up := n.connected(t)
	ev := n.next(t, EventToken, tok.ExpiresIn(time.Now())+time.Second)
	if !tok.Valid(ev.At) {
		t.Fatal("renewed after the token expired")
	}
	t.Logf("path back -> reconnected %v, renewed %v before expiry",
		up.Sub(back).Round(time.Millisecond), tok.ExpiresIn(ev.At).Round(time.Millisecond))
}

// TestReconnectKeepaliveNoticesIdleDeadLink: with nothing to send, a dead
// link is noticed by the keepalive, which the agent keeps under a third
// of renew_before (here 1 s of 3 s) so that the loss is known, and the
// connection redialed, before a renewal needs it. Before the fix the
// configured 60 s keepalive applied.
func TestReconnectKeepaliveNoticesIdleDeadLink(t *testing.T) {
	b := startBroker(t)
	startIssuer(t, b.URL, 3600)
	p := startProxy(t, b)
	cfg := netConfig(t, netOptions{url: "tcp://" + p.Addr(), renewBefore: "3s", requestTimeout: "1s", keepAlive: "60s"})
	n := startNetAgent(t, cfg, clock.Real())
	n.connected(t)
	n.next(t, EventToken, waitLimit)
	p.Blackhole()
	dead := time.Now()
	at := n.lost(t, waitLimit)
	t.Logf("idle dead link noticed after %v (keepalive %v, renew_before %v)",
		at.Sub(dead).Round(time.Millisecond), keepAliveFor(&cfg), cfg.RenewBefore)
	p.Restore()
	n.connected(t)
}
