package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"agoratokens/internal/testbroker"
	"agoratokens/internal/testlog"
	"agoratokens/issuer"
	"agoratokens/issuer/devices"
	"agoratokens/sdnotify"
	"agoratokens/sdnotify/sdnotifytest"
	"agoratokens/wire"
)

func runCmd(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb testlog.Buffer
	code := run(ctx, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// TestInitCheckServe is the getting-started path: init writes a setup,
// check-config accepts it, serve runs it as is, a device registered in
// it gets its tokens, and cancelling (SIGTERM) exits 0.
func TestInitCheckServe(t *testing.T) {
	t.Setenv("AGORA_APP_ID", "")
	t.Setenv("AGORA_APP_CERTIFICATE", "")
	dir := filepath.Join(t.TempDir(), "setup")
	addr := "127.0.0.1:" + strconv.Itoa(testbroker.FreePort(t))
	code, out, errOut := runCmd(t, context.Background(), "init", dir, "--listen", addr, "--ttl", "40s")
	if code != 0 || !strings.Contains(errOut, "DEMO CREDENTIALS") || !strings.Contains(out, "serve --config") {
		t.Fatalf("init: %d\n%s\n%s", code, out, errOut)
	}
	cert, err := os.ReadFile(filepath.Join(dir, "app.cert"))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "app.cert")); st.Mode().Perm() != 0o600 {
		t.Errorf("app.cert mode %v", st.Mode().Perm())
	}
	secret := strings.TrimSpace(string(cert))
	if code, _, errOut := runCmd(t, context.Background(), "init", dir); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("second init: %d %s", code, errOut)
	}

	cfgPath := filepath.Join(dir, "issuer.yaml")
	code, out, errOut = runCmd(t, context.Background(), "check-config", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "config OK") || !strings.Contains(out, `"*"`) || !strings.Contains(out, "video (rtc, 40s)") {
		t.Fatalf("check-config: %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, secret) {
		t.Fatal("check-config printed the certificate")
	}

	// Register a device the way "device add" does.
	creds, err := devices.Load(filepath.Join(dir, "devices.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pw, err := creds.Add("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := creds.Save(filepath.Join(dir, "devices.yaml")); err != nil {
		t.Fatal(err)
	}

	notify := sdnotifytest.Listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var serveErr testlog.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgPath}, strings.NewReader(""), &bytes.Buffer{}, &serveErr)
	}()
	testlog.WaitForUnless(t, &serveErr, 15*time.Second, done, "connected and serving")
	notify.Expect("READY=1", 10*time.Second) // Type=notify in the systemd unit
	c := testbroker.Connect(t, "tcp://"+addr, testbroker.ClientOptions{ClientID: "dev-1", Username: "dev-1", Password: pw})
	topics := wire.NewTopics("")
	replies := testbroker.Subscribe(t, c, topics.Token("dev-1"))
	b, _ := json.Marshal(wire.Request{V: 1, ID: "boot"})
	testbroker.Publish(t, c, topics.Req("dev-1"), false, b)
	rep, err := wire.DecodeReply(testbroker.Receive(t, replies, 10*time.Second).Payload())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Error != nil || len(rep.Tokens) != 2 || rep.Tokens[1].Channel != "dev-1" || rep.Tokens[1].TTL != 40 || rep.Tokens[0].User != "dev-1" {
		t.Fatalf("reply %+v %+v", rep, rep.Error)
	}
	cfg, err := issuer.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := issuer.NewSigner(cfg.AppID, cfg.Certs(), cfg.ActiveCertificate, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rep.Tokens {
		if _, kid, err := sig.Verify(g.Token); err != nil || kid != "primary" {
			t.Fatalf("%s: %v", g.Name, err)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d after SIGTERM: %s", code, serveErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	notify.Expect("STOPPING=1", 10*time.Second)
	if strings.Contains(serveErr.String(), secret) {
		t.Fatal("serve logged the certificate")
	}
	// A normal shutdown warns about nothing (the embedded broker used to
	// log each connection it closed: level=WARN msg="" … use of closed
	// network connection).
	for _, l := range strings.Split(serveErr.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, `msg=""`) {
			t.Errorf("serve logged: %s", l)
		}
	}
}

func TestCheckConfigRefuses(t *testing.T) {
	t.Setenv("AGORA_APP_ID", "")
	t.Setenv("AGORA_APP_CERTIFICATE", "")
	dir := t.TempDir()
	if code, _, errOut := runCmd(t, context.Background(), "init", dir); code != 0 {
		t.Fatal(errOut)
	}
	if err := os.Chmod(filepath.Join(dir, "app.cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, context.Background(), "check-config", "--config", filepath.Join(dir, "issuer.yaml"))
	if code != 1 || !strings.Contains(errOut, "certificates[0].file") || !strings.Contains(errOut, "0644") {
		t.Fatalf("check-config of a world-readable certificate: %d %s", code, errOut)
	}
	if code, _, _ := runCmd(t, context.Background(), "check-config"); code != 2 {
		t.Fatalf("check-config without --config: %d", code)
	}
	if code, _, _ := runCmd(t, context.Background(), "serve"); code != 2 {
		t.Fatalf("serve without --config: %d", code)
	}
	code, _, errOut = runCmd(t, context.Background(), "serve", "--config", filepath.Join(dir, "issuer.yaml"))
	if code != 1 || !strings.Contains(errOut, "0644") {
		t.Fatalf("serve of a world-readable certificate: %d %s", code, errOut)
	}
}

func TestInitFromEnvironment(t *testing.T) {
	t.Setenv("AGORA_APP_ID", "970ca35de60c44645bbae8a215061b33")
	t.Setenv("AGORA_APP_CERTIFICATE", "5cfd2fd1755d40ecb72977518be15d3b")
	dir := t.TempDir()
	code, out, errOut := runCmd(t, context.Background(), "init", dir, "--ttl", "90m")
	if code != 0 || strings.Contains(errOut, "DEMO") {
		t.Fatalf("init: %d %s %s", code, out, errOut)
	}
	cfg, err := issuer.LoadConfig(filepath.Join(dir, "issuer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AppID != "970ca35de60c44645bbae8a215061b33" || cfg.Certs()[0].Value.Reveal() != "5cfd2fd1755d40ecb72977518be15d3b" ||
		cfg.Broker.Embedded == nil || cfg.Broker.Embedded.Listen != "127.0.0.1:1883" {
		t.Fatalf("config %+v", cfg)
	}
	pol, err := issuer.LoadPolicy(cfg.PolicyFile, cfg.Limits)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := pol.Grants("dev-7", []string{"video"}); err != nil || g[0].TTL != 90*time.Minute || g[0].Role != "publisher" {
		t.Fatalf("grants %+v %v", g, err)
	}
	t.Setenv("AGORA_APP_CERTIFICATE", "")
	if code, _, errOut := runCmd(t, context.Background(), "init", t.TempDir()); code != 2 || !strings.Contains(errOut, "set both") {
		t.Fatalf("init with only an app id: %d %s", code, errOut)
	}
}

// TestWatchdogProbesTheRequestPath: serve pings the systemd watchdog
// only while a probe through the worker queue is answered. A healthy
// issuer keeps pinging; once its workers are wedged it stops (for as many
// rounds as the test waits), and pings again once they are free.
func TestWatchdogProbesTheRequestPath(t *testing.T) {
	t.Setenv("AGORA_APP_ID", "")
	t.Setenv("AGORA_APP_CERTIFICATE", "")
	dir := filepath.Join(t.TempDir(), "setup")
	addr := "127.0.0.1:" + strconv.Itoa(testbroker.FreePort(t))
	if code, _, errOut := runCmd(t, context.Background(), "init", dir, "--listen", addr); code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	notifySock := sdnotifytest.Listen(t)
	t.Setenv("WATCHDOG_USEC", "2000000") // a ping every second, a probe deadline of half that
	var logs testlog.Buffer
	log := logs.Logger()
	var wedged atomic.Bool
	release := make(chan struct{})
	svc, err := issuer.New(issuer.Options{ConfigFile: filepath.Join(dir, "issuer.yaml"), Logger: log,
		WorkerHook: func() {
			if wedged.Load() {
				<-release
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	notify := sdnotify.New(log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, svc, notify, make(chan os.Signal), log) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	defer func() {
		if wedged.Load() {
			close(release)
		}
	}()

	notifySock.Expect("READY=1", 15*time.Second)
	for range 2 {
		notifySock.Expect("WATCHDOG=1", 10*time.Second) // healthy: it keeps pinging
	}

	wedged.Store(true)
	const wedgedStatus = "STATUS=not responding: the request path did not answer the watchdog probe"
	notifySock.Expect(wedgedStatus, 10*time.Second)
	// Three rounds in a row fail (each logs); then the workers are free.
	if !logs.Wait(15*time.Second, func(s string) bool { return strings.Count(s, "watchdog: the request path did not answer") >= 3 }) {
		t.Fatalf("the probes did not keep failing:\n%s", logs.String())
	}
	wedged.Store(false)
	close(release)
	// Nothing was sent while wedged (a status repeats only when it
	// changes), so the next notifications are the recovery: status, ping.
	var seen []string
	for {
		msg := notifySock.Next(10 * time.Second)
		seen = append(seen, msg)
		if msg == "WATCHDOG=1" {
			t.Fatalf("pinged while wedged: %q", seen)
		}
		if strings.HasPrefix(msg, "STATUS=serving") {
			break
		}
	}
	if msg := notifySock.Next(10 * time.Second); msg != "WATCHDOG=1" {
		t.Fatalf("after the recovery %q, want WATCHDOG=1", msg)
	}
}
