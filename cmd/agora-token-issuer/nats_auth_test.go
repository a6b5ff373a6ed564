package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/internal/testbroker"
	"agoratokens/internal/testlog"
	"agoratokens/issuer"
)

// init --nats writes a setup that check-config's loader accepts, and
// device add|rotate|remove keep nats-auth.conf in step: after a reload,
// nats-server takes a device's current secret only, and a removed
// device not at all.
func TestInitNATSAndDeviceLogins(t *testing.T) {
	t.Setenv("AGORA_APP_ID", "")
	t.Setenv("AGORA_APP_CERTIFICATE", "")
	dir := filepath.Join(t.TempDir(), "setup")
	var o, e bytes.Buffer
	if code := runInit(context.Background(), []string{dir, "--nats", "nats://127.0.0.1:4222, nats://127.0.0.1:4223"}, &o, &e); code != 0 {
		t.Fatalf("init exit %d: %s", code, e.String())
	}
	conf := filepath.Join(dir, "issuer.yaml")
	l, err := issuer.Load(conf)
	if err != nil {
		t.Fatalf("the config init --nats wrote does not load: %v", err)
	}
	n := l.Config.Broker.NATS
	if n == nil || !slices.Equal(n.Servers, []string{"nats://127.0.0.1:4222", "nats://127.0.0.1:4223"}) ||
		!slices.Equal(n.AgentURLs, []string{"tcp://127.0.0.1:1883", "tcp://127.0.0.1:1884"}) || n.QueueGroup != "agora-issuers" {
		t.Fatalf("broker.nats = %+v", n)
	}
	auth, err := os.ReadFile(filepath.Join(dir, "nats-auth.conf"))
	if err != nil || !strings.Contains(string(auth), `user: "agora-issuer"`) {
		t.Fatalf("nats-auth.conf: %v\n%s", err, auth)
	}
	pw, _ := os.ReadFile(filepath.Join(dir, "nats-issuer.password"))
	if strings.Contains(string(auth), strings.TrimSpace(string(pw))) {
		t.Fatal("nats-auth.conf holds the issuer's password in clear")
	}

	if code, _, errOut := runDev(t, "add", "cam.1", "--config", conf); code != 1 || !strings.Contains(errOut, `"cam.1"`) {
		t.Fatalf("device add cam.1 on NATS: exit %d: %s; want a refusal of the \".\"", code, errOut)
	}
	out := filepath.Join(t.TempDir(), "dev-1")
	if code, _, errOut := runDev(t, "add", "dev-1", "--config", conf, "--out", out, "--local"); code != 0 {
		t.Fatalf("device add: exit %d: %s", code, errOut)
	}
	ac, err := agent.LoadConfig(filepath.Join(out, "agent.yaml"))
	if err != nil {
		t.Fatalf("agent.yaml: %v", err)
	}
	if !slices.Equal(ac.Broker.URLs, []string{"tcp://127.0.0.1:1883", "tcp://127.0.0.1:1884"}) {
		t.Fatalf("agent broker.url = %q, want both nodes' MQTT listeners", ac.Broker.URLs)
	}
	secret := func(d string) string {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(out), d, "password"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	first := secret("dev-1")
	cluster := testbroker.StartNATS(t, testbroker.NATSOptions{AuthFile: filepath.Join(dir, "nats-auth.conf")})
	node := cluster.Nodes[0]
	login := func(d, pw string) error {
		_, err := testbroker.TryConnect(t, node.MQTTURL, testbroker.ClientOptions{ClientID: d, Username: d, Password: pw})
		return err
	}
	cluster.WaitMQTT(testbroker.ClientOptions{ClientID: "dev-1", Username: "dev-1", Password: first})

	if code, _, errOut := runDev(t, "rotate", "dev-1", "--config", conf, "--out", out); code != 0 {
		t.Fatalf("device rotate: exit %d: %s", code, errOut)
	}
	node.Reload()
	if login("dev-1", first) == nil {
		t.Fatal("the old secret still logs in after rotate and reload")
	}
	if err := login("dev-1", secret("dev-1")); err != nil {
		t.Fatalf("the rotated secret does not log in: %v", err)
	}

	if code, _, errOut := runDev(t, "add", "dev-2", "--config", conf, "--out", filepath.Join(filepath.Dir(out), "dev-2"), "--local"); code != 0 {
		t.Fatalf("device add dev-2: exit %d: %s", code, errOut)
	}
	code, _, errOut := runDev(t, "remove", "dev-1", "--config", conf)
	if code != 0 || !strings.Contains(errOut, "nats-server --signal reload") {
		t.Fatalf("device remove: exit %d: %s", code, errOut)
	}
	node.Reload()
	if login("dev-1", secret("dev-1")) == nil {
		t.Fatal("a removed device still logs in after reload")
	}
	if err := login("dev-2", secret("dev-2")); err != nil {
		t.Fatalf("dev-2 does not log in: %v", err)
	}
}

// fleet-sim runs against a NATS setup: --register --format nats puts its
// devices in the registry and nats-auth.conf of the issuer config, and
// after a reload the storm through a node's MQTT listener gets every
// token from `serve` on NATS.
func TestFleetSimAgainstNATS(t *testing.T) {
	t.Setenv("AGORA_APP_ID", "")
	t.Setenv("AGORA_APP_CERTIFICATE", "")
	dir := filepath.Join(t.TempDir(), "setup")
	var o, e bytes.Buffer
	if code := runInit(context.Background(), []string{dir, "--nats", "nats://127.0.0.1:4222"}, &o, &e); code != 0 {
		t.Fatalf("init exit %d: %s", code, e.String())
	}
	conf := filepath.Join(dir, "issuer.yaml")
	seed := filepath.Join(t.TempDir(), "sim.seed")
	if code, out, errOut := runSim(t, "--seed-file", seed, "--devices", "5", "--register", conf, "--format", "nats"); code != 0 {
		t.Fatalf("register: exit %d: %s %s", code, out, errOut)
	}
	cluster := testbroker.StartNATS(t, testbroker.NATSOptions{AuthFile: filepath.Join(dir, "nats-auth.conf")})
	raw, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(strings.Replace(string(raw), "nats://127.0.0.1:4222", cluster.Nodes[0].ClientURL, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var serveErr testlog.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--config", conf}, strings.NewReader(""), &bytes.Buffer{}, &serveErr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exit %d: %s", code, serveErr.String())
		}
	})
	testlog.WaitForUnless(t, &serveErr, 15*time.Second, done, "connected to NATS and serving")
	code, out, errOut := runSim(t, "--seed-file", seed, "--devices", "5", "--broker", cluster.Nodes[0].MQTTURL)
	if code != 0 {
		t.Fatalf("fleet-sim against NATS: exit %d\n%s\n%s\nserve:\n%s", code, out, errOut, serveErr.String())
	}
}
