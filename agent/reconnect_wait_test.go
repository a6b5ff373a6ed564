package agent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/clock"
)

func TestKeepAliveFitsRenewBefore(t *testing.T) {
	for _, c := range []struct {
		name                 string
		keepAlive, renew, rt time.Duration
		want, wantPing       time.Duration
	}{
		{"defaults: a third of renew_before", 60 * time.Second, 30 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second},
		{"long renew_before: the configured one", 60 * time.Second, 3 * time.Minute, 10 * time.Second, time.Minute, 10 * time.Second},
		{"shorter configured one kept", 5 * time.Second, 30 * time.Second, 10 * time.Second, 5 * time.Second, 5 * time.Second},
		{"whole seconds", 60 * time.Second, 10 * time.Second, time.Second, 3 * time.Second, time.Second},
		{"at least 1 s", 60 * time.Second, 2 * time.Second, time.Second, time.Second, time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := &Config{Broker: &BrokerConfig{KeepAlive: c.keepAlive}, RenewBefore: c.renew, RequestTimeout: c.rt}
			ka := keepAliveFor(cfg)
			if ka != c.want {
				t.Fatalf("keepalive %v, want %v", ka, c.want)
			}
			if p := pingTimeoutFor(cfg, ka); p != c.wantPing {
				t.Fatalf("ping timeout %v, want %v", p, c.wantPing)
			}
			// Noticed within about 2.5 keepalives: under renew_before
			// whenever the cap applies.
			if c.renew < 3*c.keepAlive && ka+ka/2+pingTimeoutFor(cfg, ka) > c.renew && ka > time.Second {
				t.Fatalf("a dead link may go unnoticed past renew_before %v", c.renew)
			}
		})
	}
}

func TestNextWaitCappedByHeldToken(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	cfg := &Config{Backoff: BackoffConfig{Initial: time.Second, Max: time.Minute, Multiplier: 2}}
	m := &mqttSource{cfg: cfg, clk: clk, wake: make(chan struct{}, 1)}
	grown := func() *backoff.ExponentialBackOff {
		bo := &backoff.ExponentialBackOff{InitialInterval: time.Second, Multiplier: 2, MaxInterval: time.Minute,
			Stop: backoff.Stop, Clock: clk}
		bo.Reset()
		for range 4 {
			bo.NextBackOff() // 1, 2, 4, 8: the next is 16 s
		}
		return bo
	}
	for _, c := range []struct {
		name string
		held bool
		left time.Duration // token's time left; 0: none valid, < 0: expired
		want time.Duration
	}{
		{"nothing waits: the backoff", false, 0, 16 * time.Second},
		{"a request waits, no valid token: the backoff", true, 0, 16 * time.Second},
		{"a quarter of what the token has left", true, 20 * time.Second, 5 * time.Second},
		{"never under backoff.initial", true, 2 * time.Second, time.Second},
		{"the backoff when it is shorter", true, 10 * time.Minute, 16 * time.Second},
		{"the token expired: the backoff again", true, -time.Second, 16 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			m.held, m.heldBy = c.held, time.Time{}
			if c.left != 0 {
				m.heldBy = clk.Now().Add(c.left)
			}
			if got := m.nextWait(grown()); got != c.want {
				t.Fatalf("wait %v, want %v", got, c.want)
			}
		})
	}
}

// unansweredClient is a broker that takes the connection but never
// answers the subscription (only what the source calls is implemented).
type unansweredClient struct {
	mqtt.Client
	disconnects *atomic.Int32
}

type pendingToken struct{ doneToken }

func (pendingToken) WaitTimeout(time.Duration) bool { return false }
func (pendingToken) Done() <-chan struct{}          { return make(chan struct{}) }

func (c unansweredClient) Connect() mqtt.Token    { return doneToken{} }
func (c unansweredClient) IsConnectionOpen() bool { return true }
func (c unansweredClient) Disconnect(uint)        { c.disconnects.Add(1) }
func (c unansweredClient) Publish(string, byte, bool, any) mqtt.Token {
	return doneToken{}
}
func (c unansweredClient) Subscribe(string, byte, mqtt.MessageHandler) mqtt.Token {
	return pendingToken{}
}

// TestUnansweredSubscriptionRedialedWithBackoff: a connection whose
// subscription gets no answer is dropped and dialed again, after the
// backoff (growing: it never worked), not at once in a loop.
func TestUnansweredSubscriptionRedialedWithBackoff(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	cfg := mqttConfig(t, "tcp://127.0.0.1:1", t.TempDir())
	cfg.Backoff.Jitter = 0
	m, err := newMQTT(&cfg, "dev-1", clk, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var dials, disconnects atomic.Int32
	m.newClient = func(*mqtt.ClientOptions) mqtt.Client {
		dials.Add(1)
		return unansweredClient{disconnects: &disconnects}
	}
	waits := make(chan time.Duration, 8)
	m.waited = func(d time.Duration) { waits <- d }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, TransportHooks{Connected: func() { t.Error("reported connected without a subscription") }})
	}()
	defer func() { cancel(); <-done }()
	for i, want := range []time.Duration{cfg.Backoff.Initial, 2 * cfg.Backoff.Initial} {
		select {
		case d := <-waits:
			if d != want {
				t.Fatalf("wait %d: %v, want %v", i, d, want)
			}
			if n, m := dials.Load(), disconnects.Load(); n != int32(i+1) || m != n {
				t.Fatalf("after wait %d: %d dials, %d disconnects; want %d of each", i, n, m, i+1)
			}
			clk.Advance(d)
		case <-time.After(waitLimit):
			t.Fatal("no wait chosen")
		}
	}
}

// TestRequestHeldWakesOnNews: the engine repeats RequestHeld at every
// step while requests wait; only news (the first, an earlier deadline, a
// deadline after the known one expired) cuts the reconnect wait short.
func TestRequestHeldWakesOnNews(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	m := &mqttSource{cfg: &Config{}, clk: clk, wake: make(chan struct{}, 1)}
	at := func(d time.Duration) time.Time { return clk.Now().Add(d) }
	for _, c := range []struct {
		name    string
		by      time.Time
		advance time.Duration
		wake    bool
		heldBy  time.Time
	}{
		{"first held request, no valid token", time.Time{}, 0, true, time.Time{}},
		{"the same again", time.Time{}, 0, false, time.Time{}},
		{"a token's deadline", at(20 * time.Second), 0, true, at(20 * time.Second)},
		{"a later one: no news", at(40 * time.Second), 0, false, at(20 * time.Second)},
		{"no valid token: no news", time.Time{}, 0, false, at(20 * time.Second)},
		{"an earlier one", at(10 * time.Second), 0, true, at(10 * time.Second)},
		{"the known one expired: a later one is news", at(40 * time.Second), 15 * time.Second, true, at(40 * time.Second)},
	} {
		clk.Advance(c.advance)
		m.RequestHeld(c.by)
		woke := false
		select {
		case <-m.wake:
			woke = true
		default:
		}
		if woke != c.wake || !m.heldBy.Equal(c.heldBy) {
			t.Fatalf("%s: woke %v, held by %v; want %v, %v", c.name, woke, m.heldBy, c.wake, c.heldBy)
		}
	}
	m.connected.Store(true)
	m.held = false
	m.RequestHeld(at(5 * time.Second))
	if m.held || len(m.wake) != 0 {
		t.Fatal("a held request counted while connected")
	}
}
