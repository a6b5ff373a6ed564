package main

import (
	"context"
	"strings"
	"testing"

	"path/filepath"
	"time"

	"agoratokens/internal/testbroker"
	"agoratokens/issuer"
	"agoratokens/wire"
)

// TestRotateWait: rotate makes the new certificate active, --wait ends
// with exit 3 while a device still holds an old token, and with 0 and a
// verdict that names when the old certificate becomes safe once every
// online device is on the new one.
func TestRotateWait(t *testing.T) {
	t.Setenv("AGORA_APP_CERTIFICATE", fleetCert2)
	m, users, brokerYAML := shippedMosquitto(t, "cam-1")
	cfg := writeFleetSetup(t, brokerYAML)
	ctx := context.Background()
	if code, _, errOut := runCmd(t, ctx, "certificate", "add", "next", "--config", cfg); code != 0 {
		t.Fatalf("certificate add: %s", errOut)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--config", cfg}, 2, "--to ID is required"},
		{[]string{"--to", "next"}, 2, "--config FILE is required"},
		{[]string{"--to", "next", "--config", cfg, "--rate", "0"}, 2, "--rate"},
		{[]string{"--to", "nope", "--config", cfg}, 1, "not in the config's certificates"},
	} {
		if code, _, errOut := runCmd(t, ctx, append([]string{"rotate"}, tc.args...)...); code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("rotate %v: %d %s, want %d %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}

	svc, err := issuer.New(issuer.Options{ConfigFile: cfg})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	<-svc.Started()
	// The device got a primary token: the issuer's ledger has its expiry.
	dev := testbroker.Connect(t, m.URL, testbroker.ClientOptions{ClientID: "cam-1", Username: "cam-1", Password: users["cam-1"]})
	replies := testbroker.Subscribe(t, dev, wire.NewTopics("").Token("cam-1"))
	testbroker.Publish(t, dev, wire.NewTopics("").Req("cam-1"), false, []byte(`{"v":1,"id":"r-1"}`))
	if r, err := wire.DecodeReply(testbroker.Receive(t, replies, 10*time.Second).Payload()); err != nil || r.Error != nil || r.Tokens[0].KID != "primary" {
		t.Fatalf("reply %+v %v", r, err)
	}
	ledger, err := issuer.ReadLedger(filepath.Join(filepath.Dir(cfg), "state"))
	if err != nil || ledger["primary"] == 0 {
		t.Fatalf("ledger %v %v", ledger, err)
	}
	oldExp := time.Now().Add(30 * time.Minute).Unix()
	publishStatus(t, m.URL, "cam-1", users["cam-1"], wire.DeviceStatus{V: 1, State: "online",
		Tokens: []wire.TokenStatus{{Name: "video", KID: "primary", ExpiresAt: oldExp}}})

	code, out, errOut := runCmd(t, ctx, "rotate", "--to", "next", "--config", cfg, "--wait", "--timeout", "2s")
	if code != 3 || !strings.Contains(out, "NOT COMPLETE") || !strings.Contains(out, "pending: cam-1") {
		t.Fatalf("rotate --wait with a device on the old kid: %d\n%s\n%s", code, out, errOut)
	}
	loaded, err := issuer.LoadConfig(cfg)
	if err != nil || loaded.ActiveCertificate != "next" {
		t.Fatalf("config after rotate: %v %v", loaded, err)
	}

	publishStatus(t, m.URL, "cam-1", users["cam-1"], wire.DeviceStatus{V: 1, State: "online",
		Tokens: []wire.TokenStatus{{Name: "video", KID: "next", ExpiresAt: oldExp + 60}}})
	code, out, errOut = runCmd(t, ctx, "rotate", "--to", "next", "--config", cfg, "--wait", "--timeout", "30s")
	safeAt := time.Unix(ledger["primary"], 0).UTC().Format(time.RFC3339)
	if code != 0 || !strings.Contains(out, "COMPLETE: every online device holds only next tokens") ||
		!strings.Contains(out, "NOT yet safe") || !strings.Contains(out, safeAt) {
		t.Fatalf("rotate --wait, all on the new kid: %d\n%s\n%s", code, out, errOut)
	}
}

func TestProgressLineAndVerdict(t *testing.T) {
	p := &issuer.Progress{To: "next", Done: 30, ToDo: 10, Stragglers: 2, Replicas: 2, Behind: []string{"issuer-b"}}
	bar := progressLine(p, 10, 10*time.Second, true)
	if !strings.HasPrefix(bar, "["+strings.Repeat("#", 22)+strings.Repeat(".", 8)+"] 30/40") ||
		!strings.Contains(bar, "2.0 devices/s, 5s to go") || !strings.Contains(bar, "issuer-b") {
		t.Errorf("terminal line %q", bar)
	}
	if plain := progressLine(p, 10, 10*time.Second, false); strings.Contains(plain, "[") || !strings.HasPrefix(plain, "30/40 online devices on next, 10 to do, 2 stragglers") {
		t.Errorf("plain line %q", plain)
	}
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name string
		p    issuer.Progress
		want string
	}{
		{"pending", issuer.Progress{To: "next", ToDo: 1, Replicas: 1, OldKIDs: []string{"primary"}, Pending: []string{"cam-1"}},
			"NOT COMPLETE: 1 online devices still hold tokens of primary. Do not disable the old certificate.\n  pending: cam-1\n"},
		{"not yet safe", issuer.Progress{To: "next", Replicas: 1, OldKIDs: []string{"primary"}, SafeAt: now.Add(time.Hour)},
			"COMPLETE: every online device holds only next tokens. primary is NOT yet safe to disable: a token signed with it may be live until 2027-01-15T09:00:00Z (in 1h0m0s).\n"},
		{"safe", issuer.Progress{To: "next", Replicas: 1, OldKIDs: []string{"primary"}, SafeAt: now.Add(-time.Second)},
			"COMPLETE: every online device holds only next tokens, and no token of primary can be live: SAFE to disable primary now.\n"},
		{"no replica", issuer.Progress{To: "next"}, "NOT COMPLETE: 0 online devices still hold tokens of the old certificate; no issuer replica is running. Do not disable the old certificate.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			writeVerdict(&b, &tc.p, now)
			if b.String() != tc.want {
				t.Fatalf("verdict:\n%q\nwant:\n%q", b.String(), tc.want)
			}
		})
	}
}
