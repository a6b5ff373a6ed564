package fleetsim

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"agoratokens/internal/testbroker"
	"agoratokens/issuer"
)

const fleetPolicy = `rules:
  - match: "dev-sim-*"
    tokens:
      video:  {service: rtc, channel: "{device}", uid: "{uid}", role: publisher, ttl: 1h}
      signal: {service: rtm, user: "{device}", ttl: 1h}
`

// startIssuer runs the real issuer service with brokerYAML as its
// broker section and returns it once it serves.
func startIssuer(t testing.TB, dir, brokerYAML string) *issuer.Service {
	t.Helper()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("certificate", cert+"\n")
	write("policy.yaml", fleetPolicy)
	write("issuer.yaml", "app_id: "+appID+"\ncertificates: [{id: primary, file: certificate}]\n"+brokerYAML+
		"share_group: issuers\npolicy_file: policy.yaml\nlimits:\n  rate: {per_minute: 60, burst: 10}\nlog_level: error\n")
	svc, err := issuer.New(issuer.Options{ConfigFile: filepath.Join(dir, "issuer.yaml"),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("issuer: %v", err)
		}
	})
	select {
	case <-svc.Started():
	case err := <-done:
		t.Fatalf("issuer stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("issuer did not start")
	}
	return svc
}

func TestFleetAgainstIssuerEmbedded(t *testing.T) {
	dir := t.TempDir()
	seed := bytes.Repeat([]byte{5}, seedBytes)
	const n = 50
	names := simNames(n)
	if err := Register(filepath.Join(dir, "devices.yaml"), FormatIssuer, seed, names); err != nil {
		t.Fatal(err)
	}
	svc := startIssuer(t, dir, "broker:\n  embedded: {listen: \"127.0.0.1:0\", credentials_file: devices.yaml}\n")
	res, out := simulate(t, Config{BrokerURL: "tcp://" + svc.BrokerAddr(), Devices: n, Seed: seed,
		AppID: appID, Certificates: []string{cert}, Timeout: 30 * time.Second})
	if !res.OK() || res.Tokens != 2*n {
		t.Fatalf("want every device served with 2 verified tokens:\n%s", out)
	}
}

const issuerBrokerPassword = "issuer-pw-0123456789"

// startShippedMosquitto runs mosquitto with the shipped mosquitto.conf
// and ACL (what an operator deploys), its paths moved into dir, logging
// to stderr at notice level and above, with a password file holding the
// issuer and the devices names. Lines of extraACL, when given, are
// appended to a copy of the ACL.
func startShippedMosquitto(tb testing.TB, dir string, seed []byte, names []string, extraACL ...string) *testbroker.Mosquitto {
	tb.Helper()
	mosq := filepath.Join("..", "..", "configs", "mosquitto")
	acl, err := filepath.Abs(filepath.Join(mosq, "acl"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(extraACL) > 0 {
		shipped, err := os.ReadFile(acl)
		if err != nil {
			tb.Fatal(err)
		}
		acl = filepath.Join(dir, "acl")
		if err := os.WriteFile(acl, []byte(string(shipped)+"\n"+strings.Join(extraACL, "\n")+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	passwd := filepath.Join(dir, "passwd")
	h, err := MosquittoHash(issuerBrokerPassword)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(passwd, []byte("agora-issuer:"+h+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := Register(passwd, FormatMosquitto, seed, names); err != nil {
		tb.Fatal(err)
	}
	return testbroker.StartShippedMosquitto(tb, mosq, passwd, acl)
}

// BenchmarkFleetBootStorm boots FLEET_DEVICES (default 2000) devices at
// once against mosquitto (the shipped ACL) and one issuer, and reports
// the figures of the storm. Run it with -benchtime=1x.
func BenchmarkFleetBootStorm(b *testing.B) {
	n := 2000
	if v := os.Getenv("FLEET_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("FLEET_DEVICES=%q is not a positive number", v)
		}
	}
	// mosquitto, a process of its own, inherits the raised limit.
	if err := RaiseFileLimit(uint64(n + 256)); err != nil {
		b.Fatal(err)
	}
	seed := bytes.Repeat([]byte{6}, seedBytes)
	names := simNames(n)
	dir := b.TempDir()
	m := startShippedMosquitto(b, dir, seed, names)
	if err := os.WriteFile(filepath.Join(dir, "broker-password"), []byte(issuerBrokerPassword+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	startIssuer(b, dir, fmt.Sprintf("broker:\n  url: %s\n  username: agora-issuer\n  password_file: broker-password\n", m.URL))

	for b.Loop() {
		res, out := simulate(b, Config{BrokerURL: m.URL, Devices: n, Seed: seed, AppID: appID, Timeout: 60 * time.Second})
		b.ReportMetric(float64(res.Elapsed.Milliseconds()), "served-ms")
		b.ReportMetric(float64(res.Percentile(50).Milliseconds()), "p50-ms")
		b.ReportMetric(float64(res.Percentile(99).Milliseconds()), "p99-ms")
		b.ReportMetric(float64(res.Percentile(100).Milliseconds()), "max-ms")
		b.ReportMetric(float64(res.Lost), "lost")
		b.ReportMetric(float64(res.ConnectTime.Milliseconds()), "connect-ms")
		b.ReportMetric(float64(res.Total.Milliseconds()), "total-ms")
		if !res.OK() {
			b.Fatalf("storm not fully served:\n%s", out)
		}
	}
}
