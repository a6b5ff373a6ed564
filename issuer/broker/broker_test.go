package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/internal/testbroker"
	"agoratokens/issuer/broker"
	"agoratokens/issuer/devices"
	"agoratokens/wire"
)

const wait = 5 * time.Second

var topics = wire.NewTopics("")

func TestDeviceTalksToService(t *testing.T) {
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1"}})
	svc := testbroker.Connect(t, m.URL, m.Service())
	reqs := testbroker.Subscribe(t, svc, topics.SharedReqs("issuers"))
	dev := testbroker.Connect(t, m.URL, m.Device("dev-1"))
	replies := testbroker.Subscribe(t, dev, topics.Token("dev-1"))

	testbroker.Publish(t, dev, topics.Req("dev-1"), false, []byte(`{"v":1,"id":"r-1"}`))
	req := testbroker.Receive(t, reqs, wait)
	if req.Topic() != topics.Req("dev-1") {
		t.Fatalf("service got topic %q", req.Topic())
	}
	testbroker.Publish(t, svc, topics.Token("dev-1"), false, []byte(`{"v":1,"id":"r-1"}`))
	if got := testbroker.Receive(t, replies, wait); string(got.Payload()) != `{"v":1,"id":"r-1"}` {
		t.Fatalf("device got %q", got.Payload())
	}
}

func TestLoginRefusals(t *testing.T) {
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1", "dev-2"}})
	for _, tc := range []struct {
		name string
		opts testbroker.ClientOptions
	}{
		{"anonymous", testbroker.ClientOptions{}},
		{"wrong secret", testbroker.ClientOptions{Username: "dev-1", Password: m.Secret("dev-2")}},
		{"unknown device", testbroker.ClientOptions{Username: "dev-9", Password: m.Secret("dev-1")}},
		{"not a device id", testbroker.ClientOptions{Username: "dev/1", Password: m.Secret("dev-1")}},
		{"wrong service password", testbroker.ClientOptions{Username: m.ServiceUser, Password: m.Secret("dev-1")}},
		{"other device's client id", testbroker.ClientOptions{ClientID: "dev-2", Username: "dev-1", Password: m.Secret("dev-1")}},
		{"will on other device's status", testbroker.ClientOptions{ClientID: "dev-1", Username: "dev-1", Password: m.Secret("dev-1"),
			WillTopic: topics.Status("dev-2"), WillPayload: []byte(`{"v":1,"state":"offline"}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := testbroker.TryConnect(t, m.URL, tc.opts); err == nil {
				t.Fatal("connected")
			}
		})
	}
	for _, ok := range []testbroker.ClientOptions{
		m.Device("dev-1"),
		{ClientID: "dev-2:agent", Username: "dev-2", Password: m.Secret("dev-2")},
	} {
		testbroker.Connect(t, m.URL, ok)
	}
	// An empty client id gets a unique one from the broker.
	o := testbroker.Options(m.URL, testbroker.ClientOptions{Username: "dev-2", Password: m.Secret("dev-2")}).SetClientID("")
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("connect with an empty client id: %v", tok.Error())
	}
	c.Disconnect(0)
	for _, d := range []string{"dev-1", "dev-2"} {
		if strings.Contains(m.Log(), m.Secret(d)) {
			t.Fatalf("broker log contains %s's secret", d)
		}
	}
	if !strings.Contains(m.Log(), "wrong device secret") || !strings.Contains(m.Log(), "unknown device") {
		t.Fatalf("refusals are not logged:\n%s", m.Log())
	}
}

func TestDeviceCannotPublishForAnother(t *testing.T) {
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1", "dev-2"}})
	svc := testbroker.Connect(t, m.URL, m.Service())
	reqs := testbroker.Subscribe(t, svc, topics.AllReqs())
	statuses := testbroker.Subscribe(t, svc, topics.Root+"/devices/+/status")

	for _, forged := range []string{topics.Req("dev-2"), topics.Status("dev-2"), topics.Token("dev-2"), topics.IssuerStatus()} {
		c, lost := connectWatched(t, m.URL, m.Device("dev-1"))
		c.Publish(forged, 1, false, []byte(`{"v":1,"id":"forged"}`))
		// An MQTT 3.1.1 client that publishes where it may not is
		// disconnected (there is no negative PUBACK before MQTT 5).
		select {
		case <-lost:
		case <-time.After(wait):
			t.Fatalf("publish to %s: client not disconnected", forged)
		}
		c.Disconnect(0)
	}
	// dev-2's own messages come through; nothing forged came first.
	dev2 := testbroker.Connect(t, m.URL, m.Device("dev-2"))
	testbroker.Publish(t, dev2, topics.Req("dev-2"), false, []byte(`{"v":1,"id":"real"}`))
	testbroker.Publish(t, dev2, topics.Status("dev-2"), false, []byte(`{"v":1,"state":"online"}`))
	if got := testbroker.Receive(t, reqs, wait); string(got.Payload()) != `{"v":1,"id":"real"}` {
		t.Fatalf("service got %q first", got.Payload())
	}
	if got := testbroker.Receive(t, statuses, wait); !strings.Contains(string(got.Payload()), "online") {
		t.Fatalf("service got status %q first", got.Payload())
	}
	if !strings.Contains(m.Log(), "operation refused") {
		t.Fatalf("refusal not logged:\n%s", m.Log())
	}
}

func TestDeviceSubscriptions(t *testing.T) {
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1", "dev-2"}})
	dev := testbroker.Connect(t, m.URL, m.Device("dev-1"))
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{topics.Token("dev-1"), true},
		{topics.Token("dev-2"), false},
		{topics.Root + "/devices/+/token", false},
		{"#", false},
		{"$SYS/#", false},
		{topics.Req("dev-1"), false},
		{"$share/g/" + topics.Token("dev-1"), false},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			_, granted, err := testbroker.TrySubscribe(t, dev, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if granted != tc.want {
				t.Fatalf("granted %v, want %v", granted, tc.want)
			}
		})
	}
}

func TestServiceCannotLeaveRoot(t *testing.T) {
	m := testbroker.StartMochi(t, testbroker.MochiOptions{})
	svc := testbroker.Connect(t, m.URL, m.Service())
	if _, granted, _ := testbroker.TrySubscribe(t, svc, "#"); granted {
		t.Fatal("service may subscribe to #")
	}
	testbroker.Subscribe(t, svc, "$share/issuers/"+topics.AllReqs())
	testbroker.Subscribe(t, svc, topics.Root+"/#")
}

func TestSharedSubscriptionSplitsLoad(t *testing.T) {
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1"}})
	filter := topics.SharedReqs("issuers")
	a := testbroker.Subscribe(t, testbroker.Connect(t, m.URL, m.Service()), filter)
	b := testbroker.Subscribe(t, testbroker.Connect(t, m.URL, m.Service()), filter)
	dev := testbroker.Connect(t, m.URL, m.Device("dev-1"))
	const n = 40
	for i := range n {
		testbroker.Publish(t, dev, topics.Req("dev-1"), false, fmt.Appendf(nil, `{"v":1,"id":"r-%d"}`, i))
	}
	seen := map[string]int{}
	perSub := [2]int{}
	for range n {
		select {
		case msg := <-a:
			seen[string(msg.Payload())]++
			perSub[0]++
		case msg := <-b:
			seen[string(msg.Payload())]++
			perSub[1]++
		case <-time.After(wait):
			t.Fatalf("got %d of %d requests", len(seen), n)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct requests, want %d (duplicates: %v)", len(seen), n, seen)
	}
	if perSub[0] == 0 || perSub[1] == 0 {
		t.Fatalf("load not split: %v", perSub)
	}
}

func TestRetainedStatusAndLastWill(t *testing.T) {
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1"}})
	// Connect through a connection the test can cut, as a lost Wi-Fi
	// link would: the broker then publishes the will.
	var mu sync.Mutex
	var conn net.Conn
	o := testbroker.Options(m.URL, testbroker.ClientOptions{
		ClientID: "dev-1", Username: "dev-1", Password: m.Secret("dev-1"),
		WillTopic: topics.Status("dev-1"), WillPayload: []byte(`{"v":1,"state":"offline"}`), WillRetained: true,
	})
	o.SetCustomOpenConnectionFn(func(uri *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
		c, err := net.Dial("tcp", uri.Host)
		mu.Lock()
		conn = c
		mu.Unlock()
		return c, err
	})
	dev := mqtt.NewClient(o)
	if tok := dev.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer dev.Disconnect(0)
	testbroker.Publish(t, dev, topics.Status("dev-1"), true, []byte(`{"v":1,"state":"online"}`))

	svc := testbroker.Connect(t, m.URL, m.Service())
	st := testbroker.Subscribe(t, svc, topics.Status("dev-1"))
	got := testbroker.Receive(t, st, wait)
	if !got.Retained() || string(got.Payload()) != `{"v":1,"state":"online"}` {
		t.Fatalf("retained status: %q retained=%v", got.Payload(), got.Retained())
	}
	mu.Lock()
	conn.Close()
	mu.Unlock()
	// mochi acknowledges a publish before it fans it out, so the
	// subscriber may see "online" both live and retained; then the will.
	for {
		got := testbroker.Receive(t, st, wait)
		if string(got.Payload()) == `{"v":1,"state":"offline"}` {
			break
		}
		if string(got.Payload()) != `{"v":1,"state":"online"}` {
			t.Fatalf("will: %q", got.Payload())
		}
	}
	// The will was retained: a late subscriber sees offline.
	late := testbroker.Subscribe(t, testbroker.Connect(t, m.URL, m.Service()), topics.Status("dev-1"))
	if got := testbroker.Receive(t, late, wait); string(got.Payload()) != `{"v":1,"state":"offline"}` || !got.Retained() {
		t.Fatalf("late subscriber: %q retained=%v", got.Payload(), got.Retained())
	}
}

func TestDeviceAddedWhileRunning(t *testing.T) {
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1"}})
	if _, err := testbroker.TryConnect(t, m.URL, testbroker.ClientOptions{Username: "dev-new", Password: "x"}); err == nil {
		t.Fatal("unknown device connected")
	}
	secret := m.AddDevice("dev-new")
	testbroker.Connect(t, m.URL, testbroker.ClientOptions{ClientID: "dev-new", Username: "dev-new", Password: secret})

	// A rotated secret works at once; the old one no longer does.
	f, err := devices.Load(m.CredentialsFile)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := f.Rotate("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Save(m.CredentialsFile); err != nil {
		t.Fatal(err)
	}
	testbroker.Connect(t, m.URL, testbroker.ClientOptions{ClientID: "dev-1", Username: "dev-1", Password: fresh})
	if _, err := testbroker.TryConnect(t, m.URL, m.Device("dev-1")); err == nil {
		t.Fatal("old secret still accepted after rotation")
	}
}

func TestReloadDisconnectsRemovedDevice(t *testing.T) {
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1", "dev-2"}})
	c, lost := connectWatched(t, m.URL, m.Device("dev-1"))
	defer c.Disconnect(0)
	stay := testbroker.Connect(t, m.URL, m.Device("dev-2"))

	f, err := devices.Load(m.CredentialsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Remove("dev-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(m.CredentialsFile); err != nil {
		t.Fatal(err)
	}
	if err := m.Broker().Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(wait):
		t.Fatal("removed device still connected")
	}
	if !stay.IsConnectionOpen() {
		t.Fatal("remaining device was disconnected")
	}
	if _, err := testbroker.TryConnect(t, m.URL, m.Device("dev-1")); err == nil {
		t.Fatal("removed device reconnected")
	}

	// A corrupt file is refused and the old credentials stay.
	if err := os.WriteFile(m.CredentialsFile, []byte("devices: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Broker().Reload(); err == nil {
		t.Fatal("reload accepted a corrupt file")
	}
	testbroker.Connect(t, m.URL, m.Device("dev-2"))
}

func TestRestartKeepsAddress(t *testing.T) {
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1"}})
	addr := m.Addr
	m.Restart()
	if m.Addr != addr {
		t.Fatalf("address %s, want %s", m.Addr, addr)
	}
	testbroker.Connect(t, m.URL, m.Device("dev-1"))
}

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	good := broker.Config{CredentialsFile: filepath.Join(dir, "devices.yaml"), ServiceUser: "issuer", ServicePassword: "pw-0123456789abcdef"}
	for _, tc := range []struct {
		name string
		edit func(*broker.Config)
		want string
	}{
		{"no credentials file", func(c *broker.Config) { c.CredentialsFile = "" }, "credentials file"},
		{"no service user", func(c *broker.Config) { c.ServiceUser = "" }, "service user"},
		{"no service password", func(c *broker.Config) { c.ServicePassword = "" }, "service user"},
		{"bad listen", func(c *broker.Config) { c.Listen = "nonsense" }, "listen"},
		{"bad root", func(c *broker.Config) { c.TopicRoot = "a/#" }, "topic root"},
		{"cert without key", func(c *broker.Config) { c.TLSCertFile = "x.pem" }, "TLS"},
		{"missing cert", func(c *broker.Config) { c.TLSCertFile, c.TLSKeyFile = "no.pem", "no.key" }, "TLS certificate"},
		{"corrupt credentials", func(c *broker.Config) {
			p := filepath.Join(dir, "bad.yaml")
			os.WriteFile(p, []byte("version: 1\ndevices: [{name: a, hash: nope}]\n"), 0o600)
			c.CredentialsFile = p
		}, "hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			_, err := broker.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), cfg.ServicePassword) && cfg.ServicePassword != "" {
				t.Fatal("error holds the service password")
			}
		})
	}
}

func TestRunStopsWithContextAndPortInUse(t *testing.T) {
	dir := t.TempDir()
	cfg := broker.Config{Listen: "127.0.0.1:0", CredentialsFile: filepath.Join(dir, "d.yaml"), ServiceUser: "issuer", ServicePassword: "pw-0123456789abcdef"}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(wait):
		t.Fatal("not ready")
	}
	// A second broker on the same address fails to listen, with an error.
	cfg.Listen = b.Addr()
	b2, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("second broker on %s: %v", cfg.Listen, err)
	}
	if err := b.Run(ctx); err == nil {
		t.Fatal("Run twice succeeded")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(wait):
		t.Fatal("run did not return after cancel")
	}
	if c, err := net.DialTimeout("tcp", cfg.Listen, time.Second); err == nil {
		c.Close()
		t.Fatal("still listening after Run returned")
	}
}

func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	creds := filepath.Join(dir, "devices.yaml")
	f, _ := devices.Load(creds)
	secret, _ := f.Add("dev-1")
	if err := f.Save(creds); err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{Listen: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile,
		CredentialsFile: creds, ServiceUser: "issuer", ServicePassword: "pw-0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Run(ctx)
	<-b.Ready()
	o := testbroker.Options("ssl://"+b.Addr(), testbroker.ClientOptions{ClientID: "dev-1", Username: "dev-1", Password: secret})
	o.SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost"})
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("TLS connect: %v", tok.Error())
	}
	c.Disconnect(0)
	// Plain MQTT on the TLS port does not get in.
	if _, err := testbroker.TryConnect(t, "tcp://"+b.Addr(), testbroker.ClientOptions{Username: "dev-1", Password: secret}); err == nil {
		t.Fatal("plain connection accepted on the TLS listener")
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// connectWatched connects a client and returns it with a channel that
// receives the error it loses its connection with.
func connectWatched(t *testing.T, url string, o testbroker.ClientOptions) (mqtt.Client, <-chan error) {
	t.Helper()
	lost := make(chan error, 1)
	opts := testbroker.Options(url, o)
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err })
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	return c, lost
}
