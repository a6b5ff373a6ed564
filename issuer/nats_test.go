package issuer

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"agoratokens/internal/testbroker"
	"agoratokens/issuer/natsauth"
	"agoratokens/wire"
)

const natsMinimal = `
app_id: 970ca35de60c44645bbae8a215061b33
certificates: [{id: primary, file: cert}]
broker:
  nats: {servers: ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"], user: issuer, password_file: pw}
policy_file: policy.yaml
`

func TestParseNATSConfig(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(natsMinimal))
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Broker.NATS
	if n == nil || len(n.Servers) != 2 || n.QueueGroup != DefaultQueueGroup || n.DevicesFile != "devices.yaml" || n.AuthFile != "nats-auth.conf" {
		t.Fatalf("broker.nats = %+v", n)
	}
	cfg.ResolvePaths("/etc/x")
	if n.PasswordFile != "/etc/x/pw" || n.AuthFile != "/etc/x/nats-auth.conf" {
		t.Fatalf("paths not resolved: %+v", n)
	}
	nats := func(v string) string {
		return strings.Replace(natsMinimal, `nats: {servers: ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"], user: issuer, password_file: pw}`, v, 1)
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"with url", nats("url: \"tcp://h:1\"\n  nats: {servers: [\"nats://h:4222\"]}"), "not more than one"},
		{"no servers", nats(`nats: {user: u, password_file: p}`), "broker.nats.servers: missing"},
		{"bad scheme", nats(`nats: {servers: ["nats://h:4222", "tcp://h:1883"]}`), `scheme "tcp" is not nats or tls`},
		{"no port", nats(`nats: {servers: ["nats://h"]}`), "needs a host and a port"},
		{"user in url", nats(`nats: {servers: ["nats://u:s3cret@h:4222"]}`), "not in the url"},
		{"creds and password", nats(`nats: {servers: ["nats://h:4222"], user: u, password_file: p, credentials_file: c}`), "not both"},
		{"user alone", nats(`nats: {servers: ["nats://h:4222"], user: u}`), "without broker.nats.password_file"},
		{"group", nats(`nats: {servers: ["nats://h:4222"], queue_group: "a b"}`), "broker.nats.queue_group"},
		{"agent url", nats(`nats: {servers: ["nats://h:4222"], agent_urls: ["nats://h:1"]}`), "broker.nats.agent_urls[0]"},
		{"unknown key", nats(`nats: {servers: ["nats://h:4222"], queue: x}`), "queue"},
		{"dotted root", natsMinimal + "topic_root: site/a.b\n", `topic_root (line 7): "site/a.b" holds a "."`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// natsSetup starts one nats-server with the issuer's user and devices,
// and writes an issuer config on it.
func natsSetup(t *testing.T, devices ...string) (*testbroker.NATSCluster, *setup) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "nats-auth.conf")
	h := natsauth.Hashes{}
	for _, d := range devices {
		hash, err := natsauth.Hash("pw-" + d)
		if err != nil {
			t.Fatal(err)
		}
		h[d] = hash
	}
	ih, err := natsauth.Hash(issuerPass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.Write(file, wire.NewTopics(""), &natsauth.User{Name: issuerUser, Hash: ih}, devices, h); err != nil {
		t.Fatal(err)
	}
	c := testbroker.StartNATS(t, testbroker.NATSOptions{AuthFile: file})
	c.WaitMQTT(testbroker.ClientOptions{ClientID: devices[0], Username: devices[0], Password: "pw-" + devices[0]})
	s := writeSetup(t, `broker:
  nats: {servers: ["`+c.Nodes[0].ClientURL+`"], user: `+issuerUser+`, password_file: broker.password}`,
		"listen: 127.0.0.1:0\nlimits: {rate: {per_minute: 60, burst: 3}}\n")
	return c, s
}

// Over NATS a device gets its tokens from the same request path as over
// MQTT: the policy decides, the replay cache answers a retried id with
// the same reply, the rate limit refuses a flood with retry_after, and
// the metrics count it all under transport "nats".
func TestNATSTransportSharesTheRequestPath(t *testing.T) {
	c, s := natsSetup(t, "cam-1", "door-1")
	log, _ := newLogger(t)
	r := startService(t, s.config, log, nil)
	if !r.Ready() {
		t.Fatal("not ready after Started")
	}
	d := connectDevice(t, c.Nodes[0].MQTTURL, "cam-1", "pw-cam-1")
	rep := d.request(t, "r1", "video")
	if rep.Error != nil || len(rep.Tokens) != 1 || rep.Tokens[0].Name != "video" {
		t.Fatalf("reply %+v", rep)
	}
	again := d.request(t, "r1", "video")
	if again.Error != nil || again.Tokens[0].Token != rep.Tokens[0].Token {
		t.Fatal("a retried request id got a new token, not the replayed reply")
	}
	wantError(t, d.request(t, "r2", "doorbell"), "r2", wire.CodeForbidden)
	// The burst of 3 is spent: the next is rate limited.
	limited := d.request(t, "r3", "video")
	wantError(t, limited, "r3", wire.CodeRateLimited)
	if limited.Error.RetryAfter <= 0 {
		t.Fatalf("rate limited without retry_after: %+v", limited.Error)
	}
	srv := serveFront(t, r.Service)
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`agora_issuer_requests_total{result="ok",transport="nats"} 1`,
		`agora_issuer_requests_total{result="replayed",transport="nats"} 1`,
		`agora_issuer_requests_total{result="forbidden",transport="nats"} 1`,
		`agora_issuer_requests_total{result="rate_limited",transport="nats"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := r.Probe(t.Context()); err != nil {
		t.Fatalf("the watchdog probe does not go through the NATS service's workers: %v", err)
	}
}
