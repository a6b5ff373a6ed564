package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/agent"
	"agoratokens/agent/socket"
	"agoratokens/internal/testlog"
	"agoratokens/issuer"
	"agoratokens/wire"
)

// verify checks a token the agent holds against the issuer's certificates
// and the policy: signed by kid, for cam-{device} as the device's uid.
func (e *env) verify(tok agent.Token, device, wantKID string) {
	e.t.Helper()
	cfg, err := issuer.LoadConfig(e.cfgPath)
	if err != nil {
		e.t.Fatal(err)
	}
	sig, err := issuer.NewSigner(cfg.AppID, cfg.Certs(), cfg.ActiveCertificate, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	_, kid, err := sig.Verify(tok.Token)
	if err != nil || kid != wantKID || tok.KID != wantKID {
		e.t.Fatalf("token %s: signed by %q (grant says %q), want %q: %v", tok.Name, kid, tok.KID, wantKID, err)
	}
	parsed, err := accesstoken.Parse(tok.Token)
	if err != nil {
		e.t.Fatal(err)
	}
	switch tok.Name {
	case "video":
		rtc := parsed.Service(accesstoken.ServiceRTC)
		uid := strconv.FormatUint(uint64(issuer.DeviceUID(device)), 10)
		if rtc == nil || rtc.Channel != "cam-"+device || rtc.UID != uid {
			e.t.Fatalf("video token is for %+v, want channel cam-%s uid %s", rtc, device, uid)
		}
		if _, ok := rtc.Privilege(accesstoken.PrivPublishVideoStream); !ok {
			e.t.Fatal("video token cannot publish video: the policy says publisher")
		}
	case "signal":
		if rtm := parsed.Service(accesstoken.ServiceRTM); rtm == nil || rtm.UserID != device {
			e.t.Fatalf("signal token is for %+v, want user %s", rtm, device)
		}
	}
}

// TestBootAndRenewalCycles: a booting agent gets both tokens from the real
// issuer through mosquitto, then renews them cycle after cycle, each
// renewal before the previous token expired.
func TestBootAndRenewalCycles(t *testing.T) {
	e := newEnv(t, 3*time.Second, "dev-1")
	e.startIssuer()
	start := time.Now()
	eng, _ := e.startAgent("dev-1", filepath.Join(e.dir, "state"))
	events, cancel := eng.Subscribe()
	defer cancel()

	first := map[string]agent.Token{}
	for len(first) < 2 {
		select {
		case ev := <-events:
			if ev.Kind == agent.EventToken {
				first[ev.Name] = ev.Token
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("boot: got %d of 2 tokens", len(first))
		}
	}
	boot := time.Since(start)
	t.Logf("boot to both tokens: %s", boot)
	if boot > 2*time.Second {
		t.Errorf("boot to tokens took %s, want about a second at most", boot)
	}
	e.verify(first["video"], "dev-1", "primary")
	e.verify(first["signal"], "dev-1", "primary")

	// Three renewal cycles of the video token (3 s ttl: renewal at half
	// its life), none after the token in hand expired.
	cur := first["video"]
	for i := 0; i < 3; {
		select {
		case ev := <-events:
			if ev.Name != "video" {
				continue
			}
			switch ev.Kind {
			case agent.EventExpired:
				t.Fatalf("cycle %d: the video token expired before its renewal", i+1)
			case agent.EventToken:
				if !ev.At.Before(cur.Deadline()) {
					t.Fatalf("cycle %d: renewal at %s, after the deadline %s", i+1, ev.At, cur.Deadline())
				}
				if ev.Token.Token == cur.Token {
					t.Fatalf("cycle %d: the renewal handed out the same token", i+1)
				}
				e.verify(ev.Token, "dev-1", "primary")
				cur = ev.Token
				i++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("cycle %d: no renewal", i+1)
		}
	}
}

// TestRotationPushesNewTokens: after the operator adds a certificate and
// makes it active, the issuer pushes tokens signed with it at once; the
// agent takes them long before its own renewal would have.
func TestRotationPushesNewTokens(t *testing.T) {
	e := newEnv(t, time.Hour, "dev-1")
	e.startIssuer()
	eng, _ := e.startAgent("dev-1", filepath.Join(e.dir, "state"))
	events, cancel := eng.Subscribe()
	defer cancel()
	old := next(t, events, agent.EventToken, "video", 10*time.Second).Token
	e.verify(old, "dev-1", "primary")

	kid := e.rotate(context.Background())
	pushed := next(t, events, agent.EventToken, "video", 10*time.Second).Token
	e.verify(pushed, "dev-1", kid)
	if got, ok := eng.Current("video", time.Now()); !ok || got.Token != pushed.Token {
		t.Fatal("the pushed token is not the current one")
	}
	// The old token still verifies: the old certificate stays listed
	// until every token it signed has expired.
	e.verify(old, "dev-1", "primary")
}

// TestBrokerRestartMidLifetime: with the broker gone the agent keeps
// serving its valid token; once the broker is back, it renews before the
// token expires.
func TestBrokerRestartMidLifetime(t *testing.T) {
	// 12 s ttl: renewal falls due at 6 s with the broker down; the
	// issuer's reconnection (backoff up to 5 s) and the agent's (up to
	// 1 s here) then have 6 s to bring a fresh token.
	e := newEnv(t, 12*time.Second, "dev-1")
	e.startIssuer()
	eng, _ := e.startAgent("dev-1", filepath.Join(e.dir, "state"))
	events, cancel := eng.Subscribe()
	defer cancel()
	tok := next(t, events, agent.EventToken, "video", 10*time.Second).Token

	e.broker.Stop()
	if got, ok := eng.Current("video", time.Now()); !ok || got.Token != tok.Token {
		t.Fatal("the agent dropped its valid token when the broker went away")
	}
	next(t, events, agent.EventWillExpire, "video", 10*time.Second)
	if _, ok := eng.Current("video", time.Now()); !ok {
		t.Fatal("token not served while renewing")
	}
	e.broker.Restart()
	for {
		select {
		case ev := <-events:
			if ev.Name != "video" {
				continue
			}
			if ev.Kind == agent.EventExpired {
				t.Fatal("the token expired although the broker came back in time")
			}
			if ev.Kind == agent.EventToken {
				if !ev.At.Before(tok.Deadline()) {
					t.Fatalf("renewed at %s, after the deadline %s", ev.At, tok.Deadline())
				}
				e.verify(ev.Token, "dev-1", "primary")
				return
			}
		case <-time.After(15 * time.Second):
			t.Fatal("no renewal after the broker came back")
		}
	}
}

// TestIssuerDownLongerThanTTL: with no issuer the token expires (and the
// agent says so, never handing it out again); when the issuer returns the
// agent recovers by itself.
func TestIssuerDownLongerThanTTL(t *testing.T) {
	e := newEnv(t, 3*time.Second, "dev-1")
	e.startIssuer()
	eng, _ := e.startAgent("dev-1", filepath.Join(e.dir, "state"))
	events, cancel := eng.Subscribe()
	defer cancel()
	next(t, events, agent.EventToken, "video", 10*time.Second)

	e.stopIssuer()
	next(t, events, agent.EventExpired, "video", 10*time.Second)
	if _, ok := eng.Current("video", time.Now()); ok {
		t.Fatal("an expired token is still handed out")
	}
	e.startIssuer()
	tok := next(t, events, agent.EventToken, "video", 15*time.Second).Token
	e.verify(tok, "dev-1", "primary")
	if _, ok := eng.Current("video", time.Now()); !ok {
		t.Fatal("no valid token after recovery")
	}
}

// TestRestartServesPersistedToken: an agent restarted while the broker is
// unreachable serves the token it persisted, at once.
func TestRestartServesPersistedToken(t *testing.T) {
	e := newEnv(t, time.Hour, "dev-1")
	e.startIssuer()
	state := filepath.Join(e.dir, "state")
	eng, stop := e.startAgent("dev-1", state)
	events, cancel := eng.Subscribe()
	tok := next(t, events, agent.EventToken, "video", 10*time.Second).Token
	cancel()
	stop()

	e.broker.Stop()
	eng2, _ := e.startAgent("dev-1", state)
	select {
	case <-eng2.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("restarted agent not ready")
	}
	got, ok := eng2.Current("video", time.Now())
	if !ok || got.Token != tok.Token {
		t.Fatalf("restarted agent does not serve the persisted token (ok=%v)", ok)
	}
	if st := eng2.Status(time.Now()); st.Broker == "connected" {
		t.Fatalf("broker state %q, but the broker is down", st.Broker)
	}
}

// TestCExampleAgainstRealAgent: the C client's example program, built
// with gcc, joins with the token the real agent holds and, for each
// renewal the agent pushes over its socket, makes the call an app on
// Agora's IoT SDK would make: agora_rtc_renew_token(conn, token).
func TestCExampleAgainstRealAgent(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal("gcc not found: this test builds the C client (apt-get install gcc, or run make test-deps)")
	}
	e := newEnv(t, 3*time.Second, "dev-1")
	e.startIssuer()
	eng, _ := e.startAgent("dev-1", filepath.Join(e.dir, "state"))

	sock := filepath.Join(e.dir, "agent.sock")
	srv, err := socket.New(socket.Config{Path: sock, Device: "dev-1", Logger: e.log.With("side", "socket")}, eng)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-srvDone; err != nil {
			t.Errorf("socket server: %v", err)
		}
	})
	<-srv.Ready()

	bin := filepath.Join(t.TempDir(), "example")
	src := filepath.Join("..", "clients", "c")
	if out, err := exec.Command(gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", bin,
		filepath.Join(src, "example.c"), filepath.Join(src, "agora_token_client.c")).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	runCtx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	cmd := exec.CommandContext(runCtx, bin, "-s", sock, "-n", "2", "video")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("example: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "agora_rtc_join_channel(") {
		t.Fatalf("example printed:\n%s", out)
	}
	seen := map[string]bool{}
	for i, l := range lines {
		if i > 0 && !strings.HasPrefix(l, `agora_rtc_renew_token(conn, "`) {
			t.Fatalf("line %d is not a renewal: %s", i+1, l)
		}
		q := strings.Split(l, `"`)
		if len(q) < 3 {
			t.Fatalf("no token in %q", l)
		}
		tok := q[len(q)-2]
		if seen[tok] {
			t.Fatalf("the same token was handed out twice: %s", l)
		}
		seen[tok] = true
		e.verify(agent.Token{Grant: wire.Grant{Name: "video", Token: tok, KID: "primary"}}, "dev-1", "primary")
	}
}

// TestHTTPSourceAgainstIssuer: an agent configured with the HTTP source
// instead of a broker gets its tokens from the issuer's own HTTP API with
// a bearer key, and a wrong key gets nothing.
func TestHTTPSourceAgainstIssuer(t *testing.T) {
	e := newEnv(t, time.Hour, "dev-1")
	key := randomHex(t)
	sum := sha256.Sum256([]byte(key))
	writeFile(t, filepath.Join(e.dir, "api-keys.yaml"), "keys:\n  - {principal: dev-1, sha256: "+hex.EncodeToString(sum[:])+"}\n")
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.cfgPath, string(cfg)+"listen: 127.0.0.1:0\nhttp: {api_keys_file: api-keys.yaml}\n")
	e.startIssuer()
	base := "http://" + e.issuer.HTTPAddr()

	for _, tc := range []struct {
		name, key string
		ok        bool
	}{
		{"right key", key, true},
		{"wrong key", randomHex(t), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "api-key"), tc.key+"\n")
			acfg, err := agent.ParseConfig(strings.NewReader(`device_id: dev-1
http: {url: "`+base+`", bearer_token_file: api-key, kind: issuer}
tokens: [video]
backoff: {initial: 200ms, max: 1s, multiplier: 2, jitter: 0.1}
request_timeout: 2s
state_dir: state
`), dir)
			if err != nil {
				t.Fatal(err)
			}
			var logs testlog.Buffer
			eng, err := agent.New(*acfg, agent.Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			events, cancel := eng.Subscribe()
			defer cancel()
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- eng.Run(ctx) }()
			defer func() { stop(); <-done }()
			if tc.ok {
				tok := next(t, events, agent.EventToken, "video", 10*time.Second).Token
				e.verify(tok, "dev-1", "primary")
				return
			}
			// A refused key: the agent logs why and hands out nothing.
			testlog.WaitForUnless(t, &logs, 10*time.Second, events, "401", "nauthori")
			if strings.Contains(logs.String(), tc.key) {
				t.Fatal("the agent logged its API key")
			}
		})
	}
}
