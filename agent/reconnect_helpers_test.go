package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/clock"
	"agoratokens/internal/testbroker"
)

// netOptions shape the config of a netAgent.
type netOptions struct {
	url, password  string
	renewBefore    string // default 30s
	requestTimeout string // default 1s
	keepAlive      string // default: the config's default
	backoff        string // default {initial: 100ms, max: 30s, jitter: 0}
}

func netConfig(t testing.TB, o netOptions) Config {
	t.Helper()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.password, devPassword)
	def(&o.renewBefore, "30s")
	def(&o.requestTimeout, "1s")
	def(&o.backoff, "{initial: 100ms, max: 30s, jitter: 0}")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "password"), []byte(o.password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broker := "{url: " + o.url + ", password_file: password"
	if o.keepAlive != "" {
		broker += ", keepalive: " + o.keepAlive
	}
	y := fmt.Sprintf("device_id: dev-1\nbroker: %s}\ntokens: [video]\nrenew_before: %s\nrequest_timeout: %s\nbackoff: %s\nstate_dir: %s\n",
		broker, o.renewBefore, o.requestTimeout, o.backoff, t.TempDir())
	c, err := ParseConfig(strings.NewReader(y), dir)
	if err != nil {
		t.Fatal(err)
	}
	c.fillDefaults()
	if err := c.ReadSecrets(); err != nil {
		t.Fatal(err)
	}
	return *c
}

// netAgent is an engine over the real MQTT source, on clk, with taps on
// the source's connection hooks and on the reconnect waits it chooses.
type netAgent struct {
	*liveAgent
	src   *mqttSource
	clk   clock.Clock
	up    chan time.Time // real time of each connection (subscribed)
	down  chan time.Time // real time of each loss
	waits chan time.Duration
}

// tapTransport passes everything to the MQTT source and tells the test
// of each connection and loss.
type tapTransport struct {
	*mqttSource
	n *netAgent
}

func (t tapTransport) Run(ctx context.Context, h TransportHooks) error {
	return t.mqttSource.Run(ctx, TransportHooks{
		Connected:    func() { h.Connected(); t.n.up <- time.Now() },
		Disconnected: func() { h.Disconnected(); t.n.down <- time.Now() },
		Unsolicited:  h.Unsolicited,
	})
}

func startNetAgent(t *testing.T, cfg Config, clk clock.Clock) *netAgent {
	t.Helper()
	log := testLogger(t)
	src, err := newMQTT(&cfg, "dev-1", clk, log)
	if err != nil {
		t.Fatal(err)
	}
	n := &netAgent{src: src, clk: clk, up: make(chan time.Time, 64), down: make(chan time.Time, 64),
		waits: make(chan time.Duration, 64)}
	src.waited = func(d time.Duration) { n.waits <- d }
	e, err := New(cfg, Deps{Logger: log, Clock: clk, Transport: tapTransport{src, n}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ev, _ := e.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	n.liveAgent = &liveAgent{e: e, events: ev, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- e.Run(ctx) }()
	t.Cleanup(func() { n.stop(t) })
	<-e.Ready()
	return n
}

// connected waits for the next connection and returns when it came.
func (n *netAgent) connected(t testing.TB) time.Time {
	t.Helper()
	select {
	case at := <-n.up:
		return at
	case <-time.After(waitLimit):
		t.Fatal("the agent did not connect to the broker")
		return time.Time{}
	}
}

// lost waits for the next loss of the connection.
func (n *netAgent) lost(t testing.TB, within time.Duration) time.Time {
	t.Helper()
	select {
	case at := <-n.down:
		return at
	case <-time.After(within):
		t.Fatalf("the agent did not notice the lost connection within %v", within)
		return time.Time{}
	}
}

// wait returns the next wait the reconnect loop chose (its timer is
// armed by then).
func (n *netAgent) wait(t testing.TB) time.Duration {
	t.Helper()
	select {
	case d := <-n.waits:
		return d
	case <-time.After(waitLimit):
		t.Fatal("the reconnect loop chose no wait")
		return 0
	}
}

// mochiBroker is the embedded broker with dev-1 registered and the fake
// issuer's login.
func mochiBroker(t testing.TB) *testbroker.Mochi {
	t.Helper()
	return testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1"},
		ServiceUser: "issuer", ServicePassword: issuerPassword})
}
