package fleetsim

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/accesstoken"
	"agoratokens/internal/testbroker"
	"agoratokens/issuer/broker"
	"agoratokens/issuer/devices"
	"agoratokens/wire"
)

const (
	appID = "0123456789abcdef0123456789abcdef"
	cert  = "fedcba9876543210fedcba9876543210"
)

func TestMosquittoHashMatchesMosquittoPasswd(t *testing.T) {
	// A line mosquitto_passwd wrote for user alice, password secret1.
	salt, _ := base64.StdEncoding.DecodeString("0ezopsUvDaRb/UtI")
	got, err := mosquittoHashSalt("secret1", salt)
	if err != nil {
		t.Fatal(err)
	}
	want := "$7$101$0ezopsUvDaRb/UtI$n6rPsID2Ve07M5CoDyfy7BubiGqn+i8wUYEntj4VQ296EfsdFvJy2A7redE2aju8Gt6Unojo+cznXS1FiQM8SQ=="
	if got != want {
		t.Fatalf("hash\n got %s\nwant %s", got, want)
	}
}

func TestSeedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed")
	a, err := LoadOrCreateSeed(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateSeed(path)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("second load: %v, equal=%v", err, bytes.Equal(a, b))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("seed mode %v", st.Mode().Perm())
	}
	if Secret(a, "dev-1") == Secret(a, "dev-2") || len(Secret(a, "dev-1")) != 32 {
		t.Fatal("secrets are not distinct 32-character strings")
	}
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := LoadOrCreateSeed(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt seed: %v", err)
	}
}

func TestRegisterMosquittoLogsIn(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, seedBytes)
	// Start mosquitto with a service user, then add the fleet to its
	// password file and reload, keeping the service user's line.
	m := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{Users: map[string]string{"agora-issuer": "issuer-pw-0123456789"}})
	pw := filepath.Join(m.Dir, "passwd")
	names := []string{"dev-sim-00000", "dev-sim-00001"}
	if err := Register(pw, FormatMosquitto, seed, names); err != nil {
		t.Fatal(err)
	}
	if err := Register(pw, FormatMosquitto, seed, names); err != nil { // idempotent
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(pw)
	if n := strings.Count(string(raw), "\n"); n != 3 {
		t.Fatalf("password file has %d lines, want 3:\n%s", n, raw)
	}
	m.Reload()
	for _, n := range names {
		testbroker.Connect(t, m.URL, testbroker.ClientOptions{ClientID: n, Username: n, Password: Secret(seed, n)})
	}
	testbroker.Connect(t, m.URL, testbroker.ClientOptions{Username: "agora-issuer", Password: "issuer-pw-0123456789"})
	if _, err := testbroker.TryConnect(t, m.URL, testbroker.ClientOptions{Username: names[0], Password: Secret(seed, names[1])}); err == nil {
		t.Fatal("wrong secret accepted")
	}
}

func TestRegisterIssuerFormat(t *testing.T) {
	seed := bytes.Repeat([]byte{9}, seedBytes)
	path := filepath.Join(t.TempDir(), "devices.yaml")
	if err := Register(path, FormatIssuer, seed, []string{"a-1", "a-2"}); err != nil {
		t.Fatal(err)
	}
	if err := Register(path, FormatIssuer, seed, []string{"a-2", "a-3"}); err != nil {
		t.Fatal(err)
	}
	f, err := devices.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a-1", "a-2", "a-3"} {
		if !f.Check(n, Secret(seed, n)) {
			t.Errorf("%s does not check", n)
		}
	}
	if err := Register(path, "bcrypt", seed, nil); err == nil {
		t.Fatal("unknown format accepted")
	}
}

// responder answers requests as an issuer would, with a signed RTC
// token; it refuses deny and ignores drop.
func responder(t *testing.T, url, user, pass, deny, drop string) {
	t.Helper()
	tp := wire.NewTopics("")
	c := testbroker.Connect(t, url, testbroker.ClientOptions{Username: user, Password: pass})
	b := &accesstoken.Builder{AppID: appID, Certificate: cert}
	tok := c.Subscribe(tp.SharedReqs("issuers"), 1, func(c mqtt.Client, m mqtt.Message) {
		dev, err := tp.DeviceFromReq(m.Topic())
		if err != nil || dev == drop {
			return
		}
		req, err := wire.DecodeRequest(m.Payload())
		if err != nil {
			return
		}
		reply := wire.Reply{V: 1, ID: req.ID}
		if dev == deny {
			reply.Error = &wire.ErrorBody{Code: wire.CodeForbidden, Message: "not in policy"}
		} else {
			s, err := b.RTCWithUID(dev, 42, accesstoken.RolePublisher, 3600, 3600)
			if err != nil {
				t.Errorf("sign: %v", err)
				return
			}
			now := time.Now().Unix()
			reply.IssuedAt = now
			reply.Tokens = []wire.Grant{{Name: "video", Service: "rtc", Channel: dev, Token: s, IssuedAt: now, ExpiresAt: now + 3600, TTL: 3600, KID: "primary"}}
		}
		p, _ := wire.Encode(reply)
		c.Publish(tp.Token(dev), 1, false, p)
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("responder subscribe: %v", tok.Error())
	}
}

func startBroker(t *testing.T, creds string) string {
	t.Helper()
	b, err := broker.New(broker.Config{Listen: "127.0.0.1:0", CredentialsFile: creds, ServiceUser: "issuer", ServicePassword: "issuer-pw-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	return "tcp://" + b.Addr()
}

func TestSimulatedFleetAgainstEmbeddedBroker(t *testing.T) {
	seed := bytes.Repeat([]byte{3}, seedBytes)
	creds := filepath.Join(t.TempDir(), "devices.yaml")
	const n = 50
	names := simNames(n)
	if err := Register(creds, FormatIssuer, seed, names); err != nil {
		t.Fatal(err)
	}
	url := startBroker(t, creds)
	responder(t, url, "issuer", "issuer-pw-0123456789", names[7], names[9])

	res, out := simulate(t, Config{BrokerURL: url, Devices: n, Seed: seed, AppID: appID, Certificates: []string{cert}, Timeout: 2 * time.Second})
	if res.Connected != n || res.Requests != n || res.Replies != n-2 || res.Tokens != n-2 {
		t.Fatalf("result %+v", res)
	}
	if res.Errors[wire.CodeForbidden] != 1 || res.Lost != 1 || res.OK() {
		t.Fatalf("want one forbidden and one lost: %+v", res)
	}
	if len(res.Latencies) != n-1 || res.Percentile(99) <= 0 || res.Percentile(100) < res.Percentile(50) {
		t.Fatalf("latencies %v", res.Latencies)
	}
	if !strings.Contains(out, "lost 1") || !strings.Contains(out, "forbidden") {
		t.Fatalf("printed result:\n%s", out)
	}
}

// Served is called once, when the wait for replies is over (after the
// last reply, or after the timeout when a request goes unanswered), and
// before Run returns.
func TestServedIsCalledAfterTheWait(t *testing.T) {
	seed := bytes.Repeat([]byte{5}, seedBytes)
	creds := filepath.Join(t.TempDir(), "devices.yaml")
	names := simNames(4)
	if err := Register(creds, FormatIssuer, seed, names); err != nil {
		t.Fatal(err)
	}
	url := startBroker(t, creds)
	responder(t, url, "issuer", "issuer-pw-0123456789", "", names[3])
	const timeout = 500 * time.Millisecond
	calls := 0
	var servedAt time.Time
	before := time.Now()
	res, _ := simulate(t, Config{BrokerURL: url, Devices: 4, Seed: seed, Timeout: timeout,
		Served: func() { calls++; servedAt = time.Now() }})
	if calls != 1 {
		t.Fatalf("Served called %d times, want once", calls)
	}
	if res.Replies != 3 || res.Lost != 1 {
		t.Fatalf("result %+v", res)
	}
	// The wait ends at the timeout (one request is dropped), after the
	// fleet connected and sent its requests.
	if waited := servedAt.Sub(before); waited < res.ConnectTime+timeout || waited < res.Total {
		t.Fatalf("Served called %v after the start, before the wait was over (connect %v, total %v, timeout %v)",
			waited, res.ConnectTime, res.Total, timeout)
	}
}

func TestSimulatorChecksTokens(t *testing.T) {
	seed := bytes.Repeat([]byte{4}, seedBytes)
	creds := filepath.Join(t.TempDir(), "devices.yaml")
	names := []string{DeviceName("dev-sim-", 0), DeviceName("dev-sim-", 1)}
	if err := Register(creds, FormatIssuer, seed, names); err != nil {
		t.Fatal(err)
	}
	url := startBroker(t, creds)
	responder(t, url, "issuer", "issuer-pw-0123456789", "", "")
	// The tokens are signed with cert; a simulator expecting another
	// certificate counts them as bad.
	res, _ := simulate(t, Config{BrokerURL: url, Devices: 2, Seed: seed, Certificates: []string{"00000000000000000000000000000000"}, Rate: 100})
	if res.Errors["bad_reply"] != 2 || res.Replies != 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestSimulatorUnknownDevicesFailToConnect(t *testing.T) {
	url := startBroker(t, filepath.Join(t.TempDir(), "none.yaml"))
	res, _ := simulate(t, Config{BrokerURL: url, Devices: 3, Seed: []byte("x"), Timeout: time.Second})
	if res.ConnectFailed != 3 || res.Requests != 0 || res.OK() {
		t.Fatalf("result %+v", res)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no broker", Config{Devices: 1, Seed: []byte("s")}, "broker"},
		{"no devices", Config{BrokerURL: "tcp://x:1", Seed: []byte("s")}, "devices"},
		{"no seed", Config{BrokerURL: "tcp://x:1", Devices: 1}, "seed"},
		{"bad prefix", Config{BrokerURL: "tcp://x:1", Devices: 1, Seed: []byte("s"), Prefix: "a/b"}, "prefix"},
		{"negative rate", Config{BrokerURL: "tcp://x:1", Devices: 1, Seed: []byte("s"), Rate: -1}, "rate"},
		{"bad token name", Config{BrokerURL: "tcp://x:1", Devices: 1, Seed: []byte("s"), Tokens: []string{"a b"}}, "token name"},
		{"bad scheme", Config{BrokerURL: "ws://x:1", Devices: 1, Seed: []byte("s")}, `scheme "ws" is not tcp or ssl`},
		{"no port", Config{BrokerURL: "tcp://x", Devices: 1, Seed: []byte("s")}, "needs a host and a port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

// simNames returns the names of the first n simulated devices.
func simNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = DeviceName("dev-sim-", i)
	}
	return names
}

// simulate runs a simulation with cfg and returns its result and its
// printed report, which it also logs.
func simulate(tb testing.TB, cfg Config) (*Result, string) {
	tb.Helper()
	sim, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := sim.Run(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	res.Print(&out)
	tb.Logf("\n%s", out.String())
	return res, out.String()
}
