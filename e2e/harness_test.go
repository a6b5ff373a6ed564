package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/internal/testbroker"
	"agoratokens/internal/testlog"
	"agoratokens/issuer"
)

// env is one fleet in miniature: mosquitto with the shipped ACL, an issuer
// and the files both need.
type env struct {
	t       *testing.T
	dir     string
	broker  *testbroker.Mosquitto
	cfgPath string
	appID   string
	certs   []string // certificate values, never logged
	devices map[string]string
	logs    *testlog.Buffer
	log     *slog.Logger

	issuerStop context.CancelFunc
	issuerDone chan error
	issuer     *issuer.Service
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newEnv starts mosquitto with configs/mosquitto/acl and writes an issuer
// config whose policy grants dev-* a video (RTC) and a signal (RTM) token
// with the given ttl.
func newEnv(t *testing.T, ttl time.Duration, devices ...string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), appID: randomHex(t), certs: []string{randomHex(t)}, devices: map[string]string{}, logs: &testlog.Buffer{}}
	e.log = e.logs.Logger()
	users := map[string]string{"agora-issuer": randomHex(t)}
	for _, d := range devices {
		e.devices[d] = randomHex(t)
		users[d] = e.devices[d]
	}
	acl, err := filepath.Abs(filepath.Join("..", "configs", "mosquitto", "acl"))
	if err != nil {
		t.Fatal(err)
	}
	e.broker = testbroker.StartMosquitto(t, testbroker.MosquittoOptions{Users: users, ACLFile: acl, Persistence: true})
	writeFile(t, filepath.Join(e.dir, "primary.cert"), e.certs[0]+"\n")
	writeFile(t, filepath.Join(e.dir, "issuer.pw"), users["agora-issuer"]+"\n")
	writeFile(t, filepath.Join(e.dir, "policy.yaml"), fmt.Sprintf(`rules:
  - match: "dev-*"
    tokens:
      video:  {service: rtc, channel: "cam-{device}", uid: "{uid}", role: publisher, ttl: %s}
      signal: {service: rtm, user: "{device}", ttl: %s}
`, ttl, ttl))
	e.cfgPath = filepath.Join(e.dir, "issuer.yaml")
	e.writeIssuerConfig("primary")
	t.Cleanup(func() {
		for _, c := range e.certs {
			if strings.Contains(e.logs.String(), c) {
				t.Error("a log line contains an App Certificate")
			}
		}
		for _, pw := range users {
			if strings.Contains(e.logs.String(), pw) {
				t.Error("a log line contains a broker password")
			}
		}
		if t.Failed() {
			t.Logf("logs:\n%s\nmosquitto:\n%s", e.logs.String(), e.broker.Log())
		}
	})
	return e
}

// writeIssuerConfig lists every certificate so far and makes active the
// one that signs.
func (e *env) writeIssuerConfig(active string) {
	var certs strings.Builder
	for i := range e.certs {
		id := "primary"
		if i > 0 {
			id = fmt.Sprintf("cert%d", i+1)
		}
		fmt.Fprintf(&certs, "  - {id: %s, file: %s.cert}\n", id, id)
	}
	writeFile(e.t, e.cfgPath, fmt.Sprintf(`app_id: %s
certificates:
%sactive_certificate: %s
broker:
  url: %s
  client_id: issuer-e2e
  username: agora-issuer
  password_file: issuer.pw
topic_root: agora/v1
policy_file: policy.yaml
limits:
  rate: {per_minute: 600, burst: 100}
log_level: debug
`, e.appID, certs.String(), active, e.broker.URL))
}

// rotate adds a new certificate, makes it active and reloads the issuer.
func (e *env) rotate(ctx context.Context) string {
	e.t.Helper()
	e.certs = append(e.certs, randomHex(e.t))
	id := fmt.Sprintf("cert%d", len(e.certs))
	writeFile(e.t, filepath.Join(e.dir, id+".cert"), e.certs[len(e.certs)-1]+"\n")
	e.writeIssuerConfig(id)
	if err := e.issuer.Reload(ctx); err != nil {
		e.t.Fatalf("reload: %v", err)
	}
	return id
}

// startIssuer runs the issuer service until stopIssuer or the test's end.
func (e *env) startIssuer() {
	e.t.Helper()
	svc, err := issuer.New(issuer.Options{ConfigFile: e.cfgPath, Logger: e.log.With("side", "issuer")})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.issuer, e.issuerStop, e.issuerDone = svc, cancel, make(chan error, 1)
	go func() { e.issuerDone <- svc.Run(ctx) }()
	select {
	case <-svc.Started():
	case err := <-e.issuerDone:
		e.t.Fatalf("issuer stopped: %v", err)
	case <-time.After(15 * time.Second):
		e.t.Fatal("issuer did not start")
	}
	e.t.Cleanup(e.stopIssuer)
}

func (e *env) stopIssuer() {
	if e.issuerStop == nil {
		return
	}
	e.issuerStop()
	if err := <-e.issuerDone; err != nil {
		e.t.Errorf("issuer stopped with %v", err)
	}
	e.issuerStop = nil
}

// startAgent runs a real agent engine for device id with its state in
// stateDir, until the returned stop function or the test's end.
func (e *env) startAgent(id, stateDir string) (*agent.Engine, func()) {
	e.t.Helper()
	pw := filepath.Join(stateDir, "..", id+".pw")
	writeFile(e.t, pw, e.devices[id]+"\n")
	cfg, err := agent.ParseConfig(strings.NewReader(fmt.Sprintf(`device_id: %s
broker:
  url: %s
  password_file: %s
  keepalive: 5s
topic_root: agora/v1
renew_before: 30s
renew_min_interval: 1s
backoff: {initial: 200ms, max: 1s, multiplier: 2, jitter: 0.1}
request_timeout: 2s
state_dir: %s
`, id, e.broker.URL, pw, stateDir)), stateDir)
	if err != nil {
		e.t.Fatal(err)
	}
	eng, err := agent.New(*cfg, agent.Deps{Logger: e.log.With("side", "agent", "device", id)})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && err != context.Canceled {
			e.t.Errorf("agent %s stopped with %v", id, err)
		}
	}
	e.t.Cleanup(stop)
	return eng, stop
}

// next waits for the next event of kind for token name.
func next(t *testing.T, events <-chan agent.Event, kind agent.EventKind, name string, timeout time.Duration) agent.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("event stream closed while waiting for %s %s", kind, name)
			}
			if ev.Kind == kind && ev.Name == name {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event for %s within %s", kind, name, timeout)
		}
	}
}
