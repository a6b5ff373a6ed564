package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"agoratokens/internal/testbroker"
	"agoratokens/issuer"
	"agoratokens/issuer/devices"
	"agoratokens/wire"
)

const (
	fleetAppID   = "970ca35de60c44645bbae8a215061b33"
	fleetCert    = "5cfd2fd1755d40ecb72977518be15d3b"
	fleetCert2   = "0123456789abcdef0123456789abcdef"
	fleetIssuer  = "agora-issuer"
	fleetIssuerP = "issuer-broker-password-0123456789"
	fleetPolicy  = `rules:
  - match: "cam-*"
    tokens:
      video: {service: rtc, channel: "cam-{device}", uid: "{uid}", role: publisher, ttl: 1h}
`
)

// writeFleetSetup writes an issuer's files (two certificates, only the
// first listed) with the given broker section; it returns the config.
func writeFleetSetup(t *testing.T, brokerYAML string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"primary.cert": fleetCert, "broker.password": fleetIssuerP,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(fleetPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := `# The issuer of the fleet tests.
app_id: ` + fleetAppID + `
# Certificates: the rotation adds more.
certificates:
  - {id: primary, file: primary.cert}   # the first
active_certificate: primary  # signs
policy_file: policy.yaml
` + brokerYAML + "\n"
	path := filepath.Join(dir, "issuer.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// shippedMosquitto runs mosquitto with the shipped ACL and the issuer's
// and the devices' logins; it returns the broker section of a config.
func shippedMosquitto(t *testing.T, ids ...string) (*testbroker.Mosquitto, map[string]string, string) {
	t.Helper()
	users := map[string]string{fleetIssuer: fleetIssuerP}
	for _, id := range ids {
		users[id] = "pw-" + id + "-0123456789"
	}
	m := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{Users: users,
		ACLFile: filepath.Join("..", "..", "configs", "mosquitto", "acl")})
	return m, users, fmt.Sprintf("broker: {url: %q, username: %s, password_file: broker.password}", m.URL, fleetIssuer)
}

func publishStatus(t testing.TB, url, id, password string, st wire.DeviceStatus) {
	t.Helper()
	c := testbroker.Connect(t, url, testbroker.ClientOptions{ClientID: id, Username: id, Password: password})
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	testbroker.Publish(t, c, wire.NewTopics("").Status(id), true, b)
	c.Disconnect(0)
}

func TestFleetStatus(t *testing.T) {
	ids := []string{"cam-1", "cam-2", "cam-3", "dev-x"}
	m, users, brokerYAML := shippedMosquitto(t, ids...)
	cfg := writeFleetSetup(t, brokerYAML)
	now := time.Now().Unix()
	statuses := map[string]wire.DeviceStatus{
		"cam-1": {V: 1, State: "online", Agent: "1.2.0", Tokens: []wire.TokenStatus{{Name: "video", KID: "primary", ExpiresAt: now + 3600}}},
		"cam-2": {V: 1, State: "online", Agent: "1.2.0", Tokens: []wire.TokenStatus{{Name: "video", KID: "next", ExpiresAt: now + 300}}},
		"cam-3": {V: 1, State: "offline", Agent: "1.1.0", Tokens: []wire.TokenStatus{{Name: "video", KID: "primary", ExpiresAt: now + 1800}}},
		"dev-x": {V: 1, State: "online", Agent: "1.2.0", At: now, Tokens: []wire.TokenStatus{
			{Name: "video", KID: "primary", ExpiresAt: now + 7200}, {Name: "signal", KID: "next", ExpiresAt: now + 7200}}},
	}
	for id, st := range statuses {
		publishStatus(t, m.URL, id, users[id], st)
	}
	ctx := context.Background()

	code, out, errOut := runCmd(t, ctx, "fleet", "status", "--config", cfg)
	if code != 0 {
		t.Fatalf("fleet status: %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"cam-1 ", "cam-2 ", "cam-3 ", "dev-x ", "video:next ", "signal:next",
		"4 devices: 3 online, 1 offline", "kid next ", "kid primary "} {
		if !strings.Contains(out, want) {
			t.Errorf("fleet status lacks %q:\n%s", want, out)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"offline", []string{"--offline"}, []string{"cam-3"}},
		{"expiring", []string{"--expiring", "10m"}, []string{"cam-2"}},
		{"kid", []string{"--kid", "next"}, []string{"cam-2", "dev-x"}},
		{"device glob", []string{"--device", "cam-*"}, []string{"cam-1", "cam-2", "cam-3"}},
		{"combined", []string{"--device", "cam-*", "--kid", "primary"}, []string{"cam-1", "cam-3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"fleet", "status", "--config", cfg, "--json"}, tc.args...)
			code, out, errOut := runCmd(t, ctx, args...)
			if code != 0 {
				t.Fatalf("%d %s", code, errOut)
			}
			var got struct {
				Devices []struct {
					Device string `json:"device"`
					Online bool   `json:"online"`
					Tokens []struct {
						Name      string `json:"name"`
						KID       string `json:"kid"`
						ExpiresIn int64  `json:"expires_in"`
					} `json:"tokens"`
				} `json:"devices"`
				Totals struct {
					Devices int            `json:"devices"`
					PerKID  map[string]int `json:"per_kid"`
				} `json:"totals"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("--json output does not parse: %v\n%s", err, out)
			}
			var names []string
			for _, d := range got.Devices {
				names = append(names, d.Device)
				want := statuses[d.Device]
				if d.Online != (want.State == "online") || len(d.Tokens) != len(want.Tokens) {
					t.Errorf("%s: %+v, want %+v", d.Device, d, want)
					continue
				}
				for i, tok := range d.Tokens {
					if tok.KID != want.Tokens[i].KID || tok.ExpiresIn <= 0 || tok.ExpiresIn > 7200 {
						t.Errorf("%s token %d: %+v, want kid %s", d.Device, i, tok, want.Tokens[i].KID)
					}
				}
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") || got.Totals.Devices != len(tc.want) {
				t.Fatalf("devices %v (totals %d), want %v", names, got.Totals.Devices, tc.want)
			}
		})
	}
	if code, _, errOut := runCmd(t, ctx, "fleet", "status", "--config", cfg, "--device", "[x"); code != 2 || !strings.Contains(errOut, "--device") {
		t.Fatalf("a bad glob: %d %s", code, errOut)
	}
}

// TestFleetStatusEmbedded: with the embedded broker, fleet status says
// clearly that serve is not running, and reaches serve's broker when it
// runs.
func TestFleetStatusEmbedded(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testbroker.FreePort(t))
	cfg := writeFleetSetup(t, "broker: {embedded: {listen: "+addr+", credentials_file: devices.yaml}}")
	creds := devices.New()
	secrets := map[string]string{}
	for i := range 50 {
		id := fmt.Sprintf("cam-%02d", i)
		sec, err := creds.Add(id)
		if err != nil {
			t.Fatal(err)
		}
		secrets[id] = sec
	}
	if err := creds.Save(filepath.Join(filepath.Dir(cfg), "devices.yaml")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, context.Background(), "fleet", "status", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "serve is not running") {
		t.Fatalf("without serve: %d\n%s\n%s", code, out, errOut)
	}

	svc, err := issuer.New(issuer.Options{ConfigFile: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-svc.Started():
	case err := <-done:
		cancel()
		t.Fatal(err)
	}
	// Retained statuses on the embedded broker: the marker arrives after
	// all of them there too.
	for id, sec := range secrets {
		publishStatus(t, "tcp://"+addr, id, sec, wire.DeviceStatus{V: 1, State: "online",
			Tokens: []wire.TokenStatus{{Name: "video", KID: "primary", ExpiresAt: time.Now().Add(time.Hour).Unix()}}})
	}
	code, out, errOut = runCmd(t, context.Background(), "fleet", "status", "--config", cfg)
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if code != 0 || !strings.Contains(out, "50 devices: 50 online") || !strings.Contains(out, "signing with primary") {
		t.Fatalf("with serve: %d\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "state", issuer.ServicePasswordFile)); !os.IsNotExist(err) {
		t.Errorf("serve left its broker login behind: %v", err)
	}
}

// BenchmarkFleetStatus10k measures fleet status over 10,000 retained
// statuses (published first by the benchmark itself).
func BenchmarkFleetStatus10k(b *testing.B) {
	const n = 10_000
	conf := "listener {{PORT}} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type notice\nlog_type information\nmax_queued_messages 200000\nset_tcp_nodelay true\n"
	if u, err := user.Current(); err == nil && u.Uid == "0" {
		conf += "user root\n"
	}
	m := testbroker.StartMosquitto(b, testbroker.MosquittoOptions{Config: conf})
	c := testbroker.Connect(b, m.URL, testbroker.ClientOptions{})
	tp := wire.NewTopics("")
	now := time.Now().Unix()
	start := time.Now()
	for i := range n {
		id := fmt.Sprintf("cam-%05d", i)
		p, _ := json.Marshal(wire.DeviceStatus{V: 1, State: "online", Agent: "1.2.0",
			Tokens: []wire.TokenStatus{{Name: "video", KID: "primary", ExpiresAt: now + int64(i)}}})
		tok := c.Publish(tp.Status(id), 1, true, p)
		if i == n-1 && (!tok.WaitTimeout(time.Minute) || tok.Error() != nil) {
			b.Fatal("publish", tok.Error())
		}
	}
	b.Logf("published %d retained statuses in %v", n, time.Since(start))
	dir := b.TempDir()
	for name, content := range map[string]string{"primary.cert": fleetCert, "broker.password": fleetIssuerP} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(fleetPolicy), 0o644); err != nil {
		b.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "issuer.yaml")
	if err := os.WriteFile(cfgPath, []byte("app_id: "+fleetAppID+"\ncertificates: [{id: primary, file: primary.cert}]\npolicy_file: policy.yaml\n"+
		fmt.Sprintf("broker: {url: %q, username: %s, password_file: broker.password}\n", m.URL, fleetIssuer)), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		var out, errb strings.Builder
		t0 := time.Now()
		code := run(context.Background(), []string{"fleet", "status", "--config", cfgPath}, strings.NewReader(""), &out, &errb)
		if code != 0 || !strings.Contains(out.String(), fmt.Sprintf("%d devices: %d online", n, n)) {
			b.Fatalf("fleet status: %d %s", code, errb.String())
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s/status")
	}
}
