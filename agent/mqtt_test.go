package agent

import (
	"agoratokens/clock"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/internal/testbroker"
	"agoratokens/internal/testlog"
	"agoratokens/wire"
)

const (
	devPassword    = "dev-1-password-0123456789abcdef"
	issuerPassword = "issuer-password-0123456789abcdef"
)

// The broker's ACL: each device only its own topics; the issuer all.
const testACL = `user issuer
topic readwrite agora/v1/#

pattern read agora/v1/devices/%u/token
pattern write agora/v1/devices/%u/req
pattern readwrite agora/v1/devices/%u/status
`

// shippedNoDelay is the set_tcp_nodelay line of the shipped mosquitto
// config. The test broker takes it so that request/reply timings are the
// deployment's: without it mosquitto's Nagle holds a request to the issuer
// until the issuer's kernel acknowledges the previous PUBACK (its delayed
// ACK, 40 ms on Linux), which dominated the start-to-first-token time.
func shippedNoDelay(t testing.TB) string {
	t.Helper()
	conf, err := os.ReadFile("../configs/mosquitto/mosquitto.conf")
	if err != nil {
		t.Fatalf("shipped mosquitto config: %v", err)
	}
	for _, l := range strings.Split(string(conf), "\n") {
		if strings.HasPrefix(l, "set_tcp_nodelay ") {
			return l
		}
	}
	t.Fatal("configs/mosquitto/mosquitto.conf has no set_tcp_nodelay line")
	return ""
}

func startBroker(t testing.TB) *testbroker.Mosquitto {
	t.Helper()
	return testbroker.StartMosquitto(t, testbroker.MosquittoOptions{
		Users:       map[string]string{"dev-1": devPassword, "issuer": issuerPassword},
		ACL:         testACL,
		ExtraConfig: shippedNoDelay(t),
	})
}

// fakeIssuer plays the issuer on a real broker: it answers each request
// with real tokens built with accesstoken.Builder.
type fakeIssuer struct {
	t      testing.TB
	c      mqtt.Client
	topics wire.Topics
	ttl    atomic.Int64
	silent atomic.Bool
	// corrupt, when set, spoils the next answers (counted down).
	corrupt atomic.Int32
	mu      sync.Mutex
	reqs    []wire.Request
	seen    chan wire.Request
	// subscribed hears of each (re)subscription to the requests.
	subscribed chan struct{}
}

func startIssuer(t testing.TB, url string, ttl int64) *fakeIssuer {
	t.Helper()
	f := &fakeIssuer{t: t, topics: wire.NewTopics(""), seen: make(chan wire.Request, 64),
		subscribed: make(chan struct{}, 64)}
	f.ttl.Store(ttl)
	opts := testbroker.Options(url, testbroker.ClientOptions{Username: "issuer", Password: issuerPassword}).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOrderMatters(false). // handlers publish; they must not hold up the client
		SetOnConnectHandler(func(c mqtt.Client) {
			c.Subscribe(f.topics.AllReqs(), 1, f.handle).Wait()
			select {
			case f.subscribed <- struct{}{}:
			default:
			}
		})
	f.c = mqtt.NewClient(opts)
	if tok := f.c.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("fake issuer connect: %v", tok.Error())
	}
	t.Cleanup(func() { f.c.Disconnect(0) })
	// The subscription is made in the connect handler, after Connect
	// returns: a request published before it would reach nobody (seen
	// under qemu, where the agent is quick to ask and the handler slow).
	f.resubscribed(t)
	return f
}

// resubscribed waits until the issuer has subscribed again (after a
// broker restart).
func (f *fakeIssuer) resubscribed(t testing.TB) {
	t.Helper()
	select {
	case <-f.subscribed:
	case <-time.After(waitLimit):
		t.Fatal("the fake issuer did not subscribe again")
	}
}

func (f *fakeIssuer) grant(name string) wire.Grant {
	return mkGrant(f.t, name, "cam-42", "2882341273", time.Now().Unix(), f.ttl.Load())
}

func (f *fakeIssuer) handle(_ mqtt.Client, m mqtt.Message) {
	dev, err := f.topics.DeviceFromReq(m.Topic())
	if err != nil {
		return
	}
	req, err := wire.DecodeRequest(m.Payload())
	if err != nil {
		f.t.Errorf("agent sent a bad request: %v", err)
		return
	}
	f.seen <- *req
	if f.silent.Load() {
		return
	}
	names := req.Tokens
	if len(names) == 0 {
		names = []string{"video"}
	}
	rep := wire.Reply{V: 1, ID: req.ID, IssuedAt: time.Now().Unix()}
	for _, n := range names {
		g := f.grant(n)
		switch f.corrupt.Add(-1) {
		case 1: // a token for another channel
			g = mkGrant(f.t, n, "cam-99", "2882341273", time.Now().Unix(), f.ttl.Load())
			g.Channel = "cam-42"
		case 0: // a broken token
			g.Token = g.Token[:len(g.Token)/2]
		}
		rep.Tokens = append(rep.Tokens, g)
	}
	f.publish(dev, rep)
}

func (f *fakeIssuer) publish(dev string, rep wire.Reply) {
	p, err := wire.Encode(rep)
	if err != nil {
		f.t.Errorf("encode reply: %v", err)
		return
	}
	f.c.Publish(f.topics.Token(dev), 1, false, p) // QoS 1: paho retries it
}

func (f *fakeIssuer) request(t testing.TB) wire.Request {
	t.Helper()
	select {
	case r := <-f.seen:
		return r
	case <-time.After(waitLimit):
		t.Fatal("the issuer got no request")
		return wire.Request{}
	}
}

// liveAgent is an engine on the real clock against a real broker.
type liveAgent struct {
	e      *Engine
	events <-chan Event
	cancel context.CancelFunc
	done   chan error
}

func mqttConfig(t testing.TB, url, stateDir string) Config {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(devPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := "device_id: dev-1\nbroker: {url: " + url + ", password_file: password}\n" +
		"tokens: [video]\nrenew_before: 30s\nrequest_timeout: 1s\n" +
		"backoff: {initial: 100ms, max: 500ms, jitter: 0.2}\nstate_dir: " + stateDir + "\n"
	c, err := ParseConfig(strings.NewReader(y), dir)
	if err != nil {
		t.Fatal(err)
	}
	return *c
}

func startAgent(t testing.TB, cfg Config) *liveAgent {
	t.Helper()
	return startAgentLogged(t, cfg, testLogger(t))
}

// startAgentLogged is startAgent logging to log.
func startAgentLogged(t testing.TB, cfg Config, log *slog.Logger) *liveAgent {
	t.Helper()
	e, err := New(cfg, Deps{Logger: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ev, _ := e.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	a := &liveAgent{e: e, events: ev, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- e.Run(ctx) }()
	t.Cleanup(func() { a.stop(t) })
	<-e.Ready()
	return a
}

func (a *liveAgent) stop(t testing.TB) {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.cancel = nil
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(waitLimit):
		t.Error("Run did not return after cancel")
	}
}

// next waits for the next event of kind k (other kinds pass by, except
// expired when k is not expired: the token must stay valid).
func (a *liveAgent) next(t testing.TB, k EventKind, timeout time.Duration) Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-a.events:
			if ev.Kind == k {
				return ev
			}
			if ev.Kind == EventExpired {
				t.Fatalf("token %q expired while waiting for %s", ev.Name, k)
			}
		case <-deadline:
			t.Fatalf("no %s event within %v", k, timeout)
		}
	}
}

func TestMQTTBootRenewalCyclesAndStatus(t *testing.T) {
	b := startBroker(t)
	watcher := testbroker.Connect(t, b.URL, testbroker.ClientOptions{Username: "issuer", Password: issuerPassword})
	statuses := testbroker.Subscribe(t, watcher, "agora/v1/devices/dev-1/status")
	iss := startIssuer(t, b.URL, 2) // renewal 0.75–1 s after each token (renew_window scaled to half of 2 s)
	start := time.Now()
	a := startAgent(t, mqttConfig(t, b.URL, t.TempDir()))
	ev := a.next(t, EventToken, 5*time.Second)
	t.Logf("first token %v after start", time.Since(start))
	for cycle := range 3 {
		prev := ev.Token
		ev = a.next(t, EventToken, 3*time.Second)
		if !prev.Valid(ev.At) {
			t.Fatalf("cycle %d: renewal came after the previous token expired", cycle)
		}
		if ev.Token.Token == prev.Token {
			t.Fatalf("cycle %d: renewal brought the same token", cycle)
		}
	}
	if r := iss.request(t); r.ID == "" || len(r.Tokens) != 1 || r.Tokens[0] != "video" {
		t.Fatalf("request = %+v, want a request id and [video]", r)
	}
	// The retained status names the token, never carries it, and turns
	// offline when the agent stops.
	var st wire.DeviceStatus
	for st.State != wire.StateOnline || len(st.Tokens) == 0 {
		m := testbroker.Receive(t, statuses, waitLimit)
		if strings.Contains(string(m.Payload()), "007") {
			t.Fatalf("status carries a token: %s", m.Payload())
		}
		if err := json.Unmarshal(m.Payload(), &st); err != nil {
			t.Fatal(err)
		}
	}
	if st.Tokens[0].Name != "video" || st.Tokens[0].KID != "primary" {
		t.Fatalf("status tokens = %+v", st.Tokens)
	}
	a.stop(t)
	for st.State != wire.StateOffline {
		m := testbroker.Receive(t, statuses, waitLimit)
		if err := json.Unmarshal(m.Payload(), &st); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMQTTBrokerRestartMidLifetime(t *testing.T) {
	b := startBroker(t)
	startIssuer(t, b.URL, 6) // renewal 2.25–3 s after each token
	a := startAgent(t, mqttConfig(t, b.URL, t.TempDir()))
	first := a.next(t, EventToken, 5*time.Second)
	b.Stop()
	if _, ok := a.e.Current("video", time.Now()); !ok {
		t.Fatal("token lost with the broker")
	}
	b.Restart()
	ev := a.next(t, EventToken, 6*time.Second)
	if !first.Token.Valid(ev.At) {
		t.Fatal("renewal after the broker restart came after expiry")
	}
	if st := a.e.Status(time.Now()); st.Broker != "connected" {
		t.Fatalf("broker state %q after restart, want connected", st.Broker)
	}
}

func TestMQTTIssuerDownLongerThanTTL(t *testing.T) {
	b := startBroker(t)
	iss := startIssuer(t, b.URL, 2)
	a := startAgent(t, mqttConfig(t, b.URL, t.TempDir()))
	a.next(t, EventToken, 5*time.Second)
	iss.silent.Store(true)
	a.next(t, EventWillExpire, 3*time.Second)
	deadline := time.After(5 * time.Second)
	for expired := false; !expired; {
		select {
		case ev := <-a.events:
			expired = ev.Kind == EventExpired
		case <-deadline:
			t.Fatal("no expired event while the issuer is down")
		}
	}
	if _, ok := a.e.Current("video", time.Now()); ok {
		t.Fatal("expired token handed out")
	}
	iss.silent.Store(false)
	a.next(t, EventToken, 5*time.Second)
	if _, ok := a.e.Current("video", time.Now()); !ok {
		t.Fatal("no valid token after the issuer came back")
	}
}

func TestMQTTRestartServesPersistedTokenBeforeBroker(t *testing.T) {
	b := startBroker(t)
	startIssuer(t, b.URL, 60)
	state := t.TempDir()
	cfg := mqttConfig(t, b.URL, state)
	a := startAgent(t, cfg)
	want := a.next(t, EventToken, 5*time.Second)
	a.stop(t)
	b.Stop()
	a2 := startAgent(t, cfg) // the broker is down
	got, ok := a2.e.Current("video", time.Now())
	if !ok || got.Token != want.Token.Token {
		t.Fatal("persisted token not served before the broker was reached")
	}
	if st := a2.e.Status(time.Now()); st.Broker != "disconnected" {
		t.Fatalf("broker state %q, want disconnected", st.Broker)
	}
}

func TestMQTTPushReplacesAndBadRepliesRejected(t *testing.T) {
	b := startBroker(t)
	iss := startIssuer(t, b.URL, 60)
	iss.corrupt.Store(2) // first answer: another channel; second: broken token
	a := startAgent(t, mqttConfig(t, b.URL, t.TempDir()))
	ev := a.next(t, EventToken, 5*time.Second)
	if ev.Token.Channel != "cam-42" {
		t.Fatalf("token for channel %q handed out", ev.Token.Channel)
	}
	if n := len(iss.seen); n < 3 {
		t.Fatalf("%d requests before a good token, want 3 (two bad replies retried)", n)
	}
	if tok, _ := a.e.Current("video", time.Now()); tok.Token != ev.Token.Token {
		t.Fatal("current token is not the good one")
	}
	// A push with a newer token (a certificate rotation) replaces it.
	pushed := mkGrant(t, "video", "cam-42", "2882341273", ev.Token.IssuedAt+1, 60)
	pushed.KID = "secondary"
	iss.publish("dev-1", wire.Reply{V: 1, ID: "push-rotate", IssuedAt: pushed.IssuedAt, Tokens: []wire.Grant{pushed}})
	if got := a.next(t, EventToken, 5*time.Second); got.Token.KID != "secondary" {
		t.Fatalf("pushed token kid %q, want secondary", got.Token.KID)
	}
}

func TestMQTTBootLogsNoFailure(t *testing.T) {
	b := startBroker(t)
	startIssuer(t, b.URL, 60)
	var logs testlog.Buffer
	a := startAgentLogged(t, mqttConfig(t, b.URL, t.TempDir()), logs.Logger())
	a.next(t, EventToken, 5*time.Second)
	a.stop(t)
	text := logs.String()
	// The first request waits for the connection instead of failing
	// against a broker not yet reached.
	for _, bad := range []string{"request failed", "after failures"} {
		if strings.Contains(text, bad) {
			t.Fatalf("boot log shows a failure (%q):\n%s", bad, text)
		}
	}
	if !strings.Contains(text, "connected to the broker") || !strings.Contains(text, "new token") {
		t.Fatalf("boot log lacks the connection or the token:\n%s", text)
	}
}

// refusingClient stands in for a broker that refuses the token-topic
// subscription a few times (a SUBACK failure: mosquitto 2.0 grants any
// subscription and filters on delivery, so a real refusal cannot be had
// from the test brokers). Only what the source calls is implemented.
type refusingClient struct {
	mqtt.Client
	refusals   atomic.Int32 // subscriptions still to refuse
	subscribes atomic.Int32
}

type doneToken struct{ err error }

func (d doneToken) Wait() bool                     { return true }
func (d doneToken) WaitTimeout(time.Duration) bool { return true }
func (d doneToken) Error() error                   { return d.err }
func (d doneToken) Done() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func (c *refusingClient) Connect() mqtt.Token     { return doneToken{} }
func (c *refusingClient) IsConnectionOpen() bool  { return true }
func (c *refusingClient) Disconnect(quiesce uint) {}
func (c *refusingClient) Publish(string, byte, bool, any) mqtt.Token {
	return doneToken{}
}
func (c *refusingClient) Subscribe(string, byte, mqtt.MessageHandler) mqtt.Token {
	c.subscribes.Add(1)
	if c.refusals.Add(-1) >= 0 {
		return doneToken{err: errors.New("not authorized")}
	}
	return doneToken{}
}

// TestMQTTRefusedSubscriptionRetried: a refused token-topic subscription
// is logged and retried with backoff on the live connection (paho would
// not retry it), and the engine hears of the connection only once
// subscribed.
func TestMQTTRefusedSubscriptionRetried(t *testing.T) {
	cfg := mqttConfig(t, "tcp://127.0.0.1:1", t.TempDir())
	var logs testlog.Buffer
	m, err := newMQTT(&cfg, "dev-1", clock.Real(), logs.Logger())
	if err != nil {
		t.Fatal(err)
	}
	fake := &refusingClient{}
	fake.refusals.Store(2)
	m.newClient = func(*mqtt.ClientOptions) mqtt.Client { return fake }
	connected := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, TransportHooks{Connected: func() { close(connected) }})
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatalf("never subscribed; log:\n%s", logs.String())
	}
	if n := fake.subscribes.Load(); n != 3 {
		t.Fatalf("%d subscriptions, want 3 (two refused, then granted)", n)
	}
	if n := strings.Count(logs.String(), "cannot subscribe to the token topic"); n != 2 {
		t.Fatalf("%d refusals logged, want 2:\n%s", n, logs.String())
	}
	if m.State() != "connected" {
		t.Fatalf("state %q after the subscription, want connected", m.State())
	}
}
