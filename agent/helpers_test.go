package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/clock"
	"agoratokens/internal/testlog"
	"agoratokens/wire"
)

const (
	testAppID = "970ca35de60c44645bbae8a215061b33"
	testCert  = "5cfd2fd1755d40ecb72977518be15d3b"
	waitLimit = 10 * time.Second
)

// mkGrant builds a real RTC token for channel/uid issued at issuedAt
// (issuer clock, Unix s) with the given ttl, and its grant.
func mkGrant(t testing.TB, name, channel, uid string, issuedAt, ttl int64) wire.Grant {
	t.Helper()
	b := accesstoken.Builder{AppID: testAppID, Certificate: testCert,
		Now: func() time.Time { return time.Unix(issuedAt, 0) }}
	tok, err := b.RTCWithAccount(channel, uid, accesstoken.RolePublisher, uint32(ttl), uint32(ttl))
	if err != nil {
		t.Fatalf("build token: %v", err)
	}
	return wire.Grant{Name: name, Service: "rtc", Channel: channel, UID: uid, Role: "publisher",
		Token: tok, IssuedAt: issuedAt, ExpiresAt: issuedAt + ttl, TTL: ttl, KID: "primary"}
}

// fakeTransport hands each request to the test, which answers it.
type fakeTransport struct {
	reqs      chan *fakeReq
	mu        sync.Mutex
	statuses  []wire.DeviceStatus
	hooks     chan TransportHooks
	connected bool
	up        chan struct{} // closed once Run has started (and called Connected if connected)
	// seed seeds the engine's renewal draws (startHarnessOn).
	seed uint64
}

func (f *fakeTransport) rand() *rand.Rand { return rand.New(rand.NewPCG(f.seed, 1)) }

type fakeReq struct {
	wire.Request
	reply chan *wire.Reply
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{reqs: make(chan *fakeReq, 16), hooks: make(chan TransportHooks, 1), connected: true,
		up: make(chan struct{})}
}

func (f *fakeTransport) Run(ctx context.Context, h TransportHooks) error {
	f.hooks <- h
	if f.connected {
		h.Connected()
	}
	close(f.up)
	<-ctx.Done()
	return nil
}

func (f *fakeTransport) Fetch(ctx context.Context, req wire.Request) (*wire.Reply, error) {
	r := &fakeReq{Request: req, reply: make(chan *wire.Reply, 1)}
	select {
	case f.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case rep := <-r.reply:
		if rep == nil {
			return nil, errors.New("transport failure")
		}
		return rep, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeTransport) State() string { return "connected" }

func (f *fakeTransport) Report(st wire.DeviceStatus) {
	f.mu.Lock()
	f.statuses = append(f.statuses, st)
	f.mu.Unlock()
}

func (f *fakeTransport) lastStatus() wire.DeviceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.statuses) == 0 {
		return wire.DeviceStatus{}
	}
	return f.statuses[len(f.statuses)-1]
}

// next waits for the engine's next request.
func (f *fakeTransport) next(t testing.TB) *fakeReq {
	t.Helper()
	select {
	case r := <-f.reqs:
		return r
	case <-time.After(waitLimit):
		t.Fatal("no request from the engine")
		return nil
	}
}

func (r *fakeReq) answer(grants ...wire.Grant) {
	r.reply <- &wire.Reply{V: 1, ID: r.ID, IssuedAt: grants[0].IssuedAt, Tokens: grants}
}

func (r *fakeReq) fail(code string, retryAfter int) {
	r.reply <- &wire.Reply{V: 1, ID: r.ID, Error: &wire.ErrorBody{Code: code, Message: "test", RetryAfter: retryAfter}}
}

// fakeBoot is a boot clock tied to a fake clock.
type fakeBoot struct {
	id    string
	clk   *clock.Fake
	start time.Time
}

func (b *fakeBoot) read() (string, time.Duration, error) {
	return b.id, time.Hour + b.clk.Now().Sub(b.start), nil
}

// harness runs an engine on a fake clock and transport.
type harness struct {
	t      *testing.T
	e      *Engine
	clk    *clock.Fake
	tr     *fakeTransport
	events <-chan Event
	cancel context.CancelFunc
	done   chan error
	// logs holds what the engine logged (it also goes to t.Log).
	logs *testlog.Buffer

	healthMu sync.Mutex
	lastH    Health
}

// testConfig is the engine tests' config. Its renew_window is the point
// 0.7: with the 100 s test tokens, renewal starts at 70 s, which is also
// their will-expire point (renew_before 30 s ahead), so these tests see
// will_expire as each renewal starts — a renewal that has not come back
// by then. Tests of the window itself set their own.
func testConfig(dir string, tokens ...string) Config {
	return Config{
		DeviceID: "dev-1", Broker: &BrokerConfig{URL: "tcp://127.0.0.1:1"},
		Tokens: tokens, RenewBefore: 30 * time.Second, RenewWindow: RenewWindow{0.7, 0.7},
		RequestTimeout:   10 * time.Second,
		RenewMinInterval: 10 * time.Second,
		Backoff:          BackoffConfig{Initial: time.Second, Max: 8 * time.Second, Multiplier: 2, Jitter: NoJitter},
		StateDir:         dir,
	}
}

func startHarness(t *testing.T, cfg Config, clk *clock.Fake, boot *fakeBoot) *harness {
	t.Helper()
	return startHarnessOn(t, cfg, clk, boot, newFakeTransport())
}

// startHarnessOn is startHarness on the given transport (one that starts
// disconnected, say).
func startHarnessOn(t *testing.T, cfg Config, clk *clock.Fake, boot *fakeBoot, tr *fakeTransport) *harness {
	t.Helper()
	if clk == nil {
		clk = clock.NewFake(time.Unix(1_763_800_000, 0))
	}
	if boot == nil {
		boot = &fakeBoot{id: "boot-a", clk: clk, start: clk.Now()}
	}
	h := &harness{t: t, clk: clk, tr: tr, done: make(chan error, 1), logs: &testlog.Buffer{}}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(tlogWriter{t}, h.logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := New(cfg, Deps{Clock: clk, Transport: tr, BootClock: boot.read, Logger: log, Rand: tr.rand(),
		OnHealth: func(hl Health) {
			h.healthMu.Lock()
			h.lastH = hl
			h.healthMu.Unlock()
		}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.e = e
	h.events, _ = e.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- e.Run(ctx) }()
	t.Cleanup(h.stop)
	for _, c := range []<-chan struct{}{e.Ready(), tr.up} {
		select {
		case <-c:
		case err := <-h.done:
			t.Fatalf("Run: %v", err)
		}
	}
	return h
}

func (h *harness) stop() {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v after cancel, want nil", err)
		}
		h.done <- nil
	case <-time.After(waitLimit):
		h.t.Error("Run did not return after cancel")
	}
}

// advance moves the fake clock and waits until the engine has acted.
func (h *harness) advance(d time.Duration) {
	h.clk.Advance(d)
	h.e.sync()
}

// event waits for the next event, which must be of kind k for name.
func (h *harness) event(k EventKind, name string) Event {
	h.t.Helper()
	select {
	case ev, ok := <-h.events:
		if !ok {
			h.t.Fatal("event subscription closed")
		}
		if ev.Kind != k || ev.Name != name {
			h.t.Fatalf("event = %s %q, want %s %q", ev.Kind, ev.Name, k, name)
		}
		return ev
	case <-time.After(waitLimit):
		h.t.Fatalf("no %s event for %q", k, name)
	}
	return Event{}
}

// noEvent checks that no event is pending (call after advance).
func (h *harness) noEvent() {
	h.t.Helper()
	select {
	case ev := <-h.events:
		h.t.Fatalf("unexpected event %s %q", ev.Kind, ev.Name)
	default:
	}
}

// inflight is how many requests the engine has in flight.
func (h *harness) inflight() int {
	h.e.mu.Lock()
	defer h.e.mu.Unlock()
	return len(h.e.attempts)
}

// health is the last Health the engine reported.
func (h *harness) health() Health {
	h.healthMu.Lock()
	defer h.healthMu.Unlock()
	return h.lastH
}

func (h *harness) wall() int64 { return h.clk.Wall().Unix() }

// logLines returns the lines logged so far that contain every one of
// parts.
func (h *harness) logLines(parts ...string) []string {
	var out []string
	for _, l := range strings.Split(h.logs.String(), "\n") {
		ok := l != ""
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}
