package fleetsim

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/internal/testbroker"
	"agoratokens/wire"
)

// flakyBroker is an MQTT listener that refuses each client's first login
// (CONNACK "server unavailable", then it closes the connection) and its
// first subscription (SUBACK 0x80, the connection stays up), as a
// nats-server answers when its JetStream requests time out in a storm,
// and takes the second. It answers no request.
type flakyBroker struct {
	l net.Listener

	loginCh chan string // each login's client id, when there is room

	mu         sync.Mutex
	logins     map[string]int
	subscribes map[string]int
	wg         sync.WaitGroup
}

func startFlakyBroker(t *testing.T) *flakyBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &flakyBroker{l: l, loginCh: make(chan string, 64), logins: map[string]int{}, subscribes: map[string]int{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.serve(nc)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		b.wg.Wait()
	})
	return b
}

func (b *flakyBroker) url() string { return "tcp://" + b.l.Addr().String() }

func (b *flakyBroker) serve(nc net.Conn) {
	defer nc.Close()
	c := newMQTTConn(nc)
	typ, body, err := c.read()
	// CONNECT: protocol name (2+4), level, flags, keep-alive (2), then
	// the client id.
	if err != nil || typ&0xf0 != pktConnect || len(body) < 12 {
		return
	}
	n := int(body[10])<<8 | int(body[11])
	if len(body) < 12+n {
		return
	}
	id := string(body[12 : 12+n])
	b.mu.Lock()
	b.logins[id]++
	first := b.logins[id] == 1
	b.mu.Unlock()
	select {
	case b.loginCh <- id:
	default:
	}
	if first {
		_ = c.write([]byte{pktConnack, 2, 0, 3})
		return
	}
	if c.write([]byte{pktConnack, 2, 0, 0}) != nil {
		return
	}
	for {
		typ, body, err := c.read()
		if err != nil {
			return
		}
		if typ != pktSubscribe || len(body) < 2 {
			continue
		}
		b.mu.Lock()
		b.subscribes[id]++
		code := byte(1)
		if b.subscribes[id] == 1 {
			code = 0x80
		}
		b.mu.Unlock()
		if c.write([]byte{pktSuback, 3, body[0], body[1], code}) != nil {
			return
		}
	}
}

// A device whose login or subscription fails retries as an agent does:
// with two retries every device of the flaky broker gets through (one
// retry for the login, one for the subscription) and is counted as
// retried; with one retry, or none, none does.
func TestDevicesRetryLoginAndSubscription(t *testing.T) {
	seed := bytes.Repeat([]byte{8}, seedBytes)
	for _, tc := range []struct {
		retries         int
		connected, fail int
	}{
		{2, 4, 0},
		{1, 0, 4},
		{0, 0, 4},
	} {
		b := startFlakyBroker(t)
		res, out := simulate(t, Config{BrokerURL: b.url(), Devices: 4, Seed: seed, Retries: tc.retries,
			RetryWait: time.Millisecond, Timeout: 200 * time.Millisecond})
		if res.Connected != tc.connected || res.ConnectFailed != tc.fail {
			t.Fatalf("retries %d: connected %d, failed %d; want %d, %d", tc.retries, res.Connected, res.ConnectFailed, tc.connected, tc.fail)
		}
		if tc.connected > 0 && (res.Retried != tc.connected || !strings.Contains(out, "after a retry 4")) {
			t.Fatalf("retries %d: retried %d, want %d\n%s", tc.retries, res.Retried, tc.connected, out)
		}
		b.mu.Lock()
		for id, n := range b.subscribes {
			// A refused subscription is retried on the same connection:
			// the second SUBSCRIBE comes on the second login's connection.
			if tc.retries == 2 && (n != 2 || b.logins[id] != 2) {
				t.Errorf("%s: %d logins and %d subscribes, want 2 and 2", id, b.logins[id], n)
			}
		}
		b.mu.Unlock()
	}
}

// A cancelled run cuts a device's retry backoff short.
func TestRetryBackoffStopsOnCancel(t *testing.T) {
	b := startFlakyBroker(t)
	sim, err := New(Config{BrokerURL: b.url(), Devices: 1, Seed: []byte("s"), Retries: 3, RetryWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		res *Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := sim.Run(ctx)
		done <- result{res, err}
	}()
	// The first login is refused; the device then waits an hour.
	select {
	case <-b.loginCh:
	case r := <-done:
		t.Fatalf("run ended before the first login: %+v, %v", r.res, r.err)
	case <-time.After(time.Minute):
		t.Fatal("no login")
	}
	cancel()
	select {
	case r := <-done:
		// The run ends with the context's error, or with the device
		// counted as failed (its wait cut short).
		if r.err == nil && r.res.ConnectFailed != 1 {
			t.Fatalf("a cancelled run: %+v", r.res)
		}
	case <-time.After(time.Minute):
		t.Fatal("the retry backoff did not stop on cancel")
	}
}

// With RequestOnConnect a device asks as soon as it is connected: here
// the first device holds its token while the second still waits to
// retry its login (it is not registered), so the last reply comes
// before the fleet is done connecting, which a fleet asking all at once
// never sees.
func TestRequestOnConnect(t *testing.T) {
	seed := bytes.Repeat([]byte{10}, seedBytes)
	creds := filepath.Join(t.TempDir(), "devices.yaml")
	if err := Register(creds, FormatIssuer, seed, simNames(1)); err != nil {
		t.Fatal(err)
	}
	url := startBroker(t, creds)
	responder(t, url, "issuer", "issuer-pw-0123456789", "", "")
	res, _ := simulate(t, Config{BrokerURL: url, Devices: 2, Seed: seed, RequestOnConnect: true,
		Retries: 1, RetryWait: 2 * time.Second, Timeout: 5 * time.Second})
	if res.Connected != 1 || res.ConnectFailed != 1 || res.Requests != 1 || res.Replies != 1 || res.Lost != 0 {
		t.Fatalf("result %+v", res)
	}
	if res.Total >= res.ConnectTime {
		t.Fatalf("last reply %v after the first connection, connect phase %v: the request waited for the fleet", res.Total, res.ConnectTime)
	}
	if _, err := New(Config{BrokerURL: url, Devices: 1, Seed: seed, RequestOnConnect: true, Rate: 5}); err == nil {
		t.Fatal("a rate with RequestOnConnect accepted")
	}
}

// A connection the broker closes during the run is counted as dropped,
// even after its reply, and the run is not OK: here a second client
// logs in as device 0 once it has asked (the broker closes the first
// connection), while device 1's request goes unanswered to keep the
// run waiting.
func TestDroppedConnectionsAreCounted(t *testing.T) {
	seed := bytes.Repeat([]byte{11}, seedBytes)
	creds := filepath.Join(t.TempDir(), "devices.yaml")
	names := simNames(2)
	if err := Register(creds, FormatIssuer, seed, names); err != nil {
		t.Fatal(err)
	}
	url := startBroker(t, creds)
	responder(t, url, "issuer", "issuer-pw-0123456789", "", names[1])
	tp := wire.NewTopics("")
	watch := testbroker.Connect(t, url, testbroker.ClientOptions{Username: "issuer", Password: "issuer-pw-0123456789"})
	kicked := make(chan error, 1)
	tok := watch.Subscribe(tp.Req(names[0]), 1, func(mqtt.Client, mqtt.Message) {
		go func() {
			_, err := testbroker.TryConnect(t, url, testbroker.ClientOptions{ClientID: names[0], Username: names[0], Password: Secret(seed, names[0])})
			kicked <- err
		}()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	res, out := simulate(t, Config{BrokerURL: url, Devices: 2, Seed: seed, Timeout: 3 * time.Second})
	if err := <-kicked; err != nil {
		t.Fatalf("second login as %s: %v", names[0], err)
	}
	if res.Dropped != 1 || res.OK() || !strings.Contains(out, "dropped     1") {
		t.Fatalf("dropped %d, OK %v\n%s", res.Dropped, res.OK(), out)
	}
}
