package issuer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/clock"
	"agoratokens/internal/testbroker"
	"agoratokens/internal/testlog"
	"agoratokens/issuer/devices"
	"agoratokens/wire"
)

const (
	waitTimeout = 10 * time.Second
	issuerUser  = "agora-issuer"
	issuerPass  = "issuer-broker-password-0123456789"
)

// newLogger returns a debug logger writing into a buffer that, when the
// test ends, must not contain any certificate or broker password.
func newLogger(t testing.TB) (*slog.Logger, *testlog.Buffer) {
	t.Helper()
	buf := &testlog.Buffer{}
	t.Cleanup(func() {
		logs := buf.String()
		for _, secret := range []string{testCert, testCert2, issuerPass} {
			if strings.Contains(logs, secret) {
				t.Errorf("a log line contains a secret")
			}
		}
		if t.Failed() {
			t.Logf("issuer log:\n%s", logs)
		}
	})
	return buf.Logger(), buf
}

// setup is an issuer's files in a temp dir.
type setup struct {
	dir    string
	config string // path of issuer.yaml
}

// writeSetup writes certificates, a policy and issuer.yaml with the
// given broker section and extra top-level YAML.
func writeSetup(t testing.TB, broker, extra string) *setup {
	t.Helper()
	dir := t.TempDir()
	writeFileTB(t, filepath.Join(dir, "primary.cert"), testCert+"\n", 0o600)
	writeFileTB(t, filepath.Join(dir, "next.cert"), testCert2+"\n", 0o600)
	writeFileTB(t, filepath.Join(dir, "broker.password"), issuerPass+"\n", 0o600)
	writeFileTB(t, filepath.Join(dir, "policy.yaml"), testPolicy, 0o644)
	cfg := "app_id: " + testAppID + `
certificates: [{id: primary, file: primary.cert}]
policy_file: policy.yaml
` + broker + "\n" + extra
	s := &setup{dir: dir, config: filepath.Join(dir, "issuer.yaml")}
	writeFileTB(t, s.config, cfg, 0o644)
	return s
}

// writeFileTB writes a file with mode, for tests and fuzz targets.
func writeFileTB(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// mosquittoEnv starts mosquitto with the example ACL and the issuer's
// and the given devices' logins.
func mosquittoEnv(t *testing.T, deviceIDs ...string) (*testbroker.Mosquitto, map[string]string, string) {
	t.Helper()
	users := map[string]string{issuerUser: issuerPass}
	for _, d := range deviceIDs {
		users[d] = "pw-" + d
	}
	m := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{Users: users, ACLFile: "../configs/mosquitto/acl"})
	return m, users, fmt.Sprintf("broker: {url: %q, username: %s, password_file: broker.password}", m.URL, issuerUser)
}

// writeCredentials registers devices for the embedded broker and
// returns their secrets.
func writeCredentials(t *testing.T, path string, deviceIDs ...string) map[string]string {
	t.Helper()
	f := devices.New()
	secrets := map[string]string{}
	for _, d := range deviceIDs {
		s, err := f.Add(d)
		if err != nil {
			t.Fatal(err)
		}
		secrets[d] = s
	}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	return secrets
}

// running is a service run by a test.
type running struct {
	*Service
	cancel context.CancelFunc
	done   chan error
}

// startService runs the issuer of cfgPath until the test ends and waits
// until it serves; a nil clk is the real clock.
func startService(t *testing.T, cfgPath string, log *slog.Logger, clk clock.Clock) *running {
	t.Helper()
	return startWith(t, Options{ConfigFile: cfgPath, Logger: log, Clock: clk})
}

// startWith is startService with any options.
func startWith(t *testing.T, opts Options) *running {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Service: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	select {
	case <-s.Started():
	case err := <-r.done:
		t.Fatalf("issuer stopped before serving: %v", err)
	case <-time.After(waitTimeout):
		t.Fatalf("issuer not ready within %v", waitTimeout)
	}
	return r
}

// stop cancels the service (SIGTERM) and waits for Run to return nil.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v after a clean stop", err)
		}
	case <-time.After(2 * drainTimeout):
		t.Errorf("Run did not return after cancel")
	}
}

// device is a test device: its client and its token subscription.
type device struct {
	id      string
	c       mqtt.Client
	replies <-chan mqtt.Message
	topics  wire.Topics
}

func connectDevice(t *testing.T, url, id, password string) *device {
	t.Helper()
	c := testbroker.Connect(t, url, testbroker.ClientOptions{ClientID: id, Username: id, Password: password})
	topics := wire.NewTopics("")
	return &device{id: id, c: c, replies: testbroker.Subscribe(t, c, topics.Token(id)), topics: topics}
}

// send publishes a raw payload on the device's request topic.
func (d *device) send(t *testing.T, payload []byte) {
	t.Helper()
	testbroker.Publish(t, d.c, d.topics.Req(d.id), false, payload)
}

// request sends a request and returns the decoded reply to it.
func (d *device) request(t *testing.T, id string, names ...string) *wire.Reply {
	t.Helper()
	b, _ := json.Marshal(wire.Request{V: 1, ID: id, Tokens: names})
	d.send(t, b)
	return d.reply(t)
}

// reply waits for the next reply.
func (d *device) reply(t *testing.T) *wire.Reply {
	t.Helper()
	m := testbroker.Receive(t, d.replies, waitTimeout)
	r, err := wire.DecodeReply(m.Payload())
	if err != nil {
		t.Fatalf("device %s: bad reply %s: %v", d.id, m.Payload(), err)
	}
	return r
}

// wantError checks that r is an error reply with code.
func wantError(t *testing.T, r *wire.Reply, id, code string) {
	t.Helper()
	if r.Error == nil || r.Error.Code != code || r.ID != id {
		t.Fatalf("reply %+v (error %+v), want id %q code %s", r, r.Error, id, code)
	}
}

// proxy is a TCP proxy a test can cut, to kill a client's connection
// abruptly, as a crash or a network failure would.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// cut closes the listener and every connection.
func (p *proxy) cut() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// replaceInFile rewrites a file (keeping its mode).
func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s has no %q", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}
