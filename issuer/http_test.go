package issuer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/clock"
	"agoratokens/wire"
)

const (
	keyCam  = "key-for-cam-9-0123456789abcdef"
	keyDoor = "key-for-door-1-0123456789abcdef"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// httpService builds a service (not run: the HTTP API needs no broker)
// with an API keys file.
func httpService(t *testing.T) (*Service, *testFront) {
	t.Helper()
	s := writeSetup(t, `broker: {url: "tcp://127.0.0.1:1"}`, "listen: 127.0.0.1:0\nhttp: {api_keys_file: keys.yaml, key_rate: {per_minute: 60, burst: 20}}")
	writeFile(t, filepath.Join(s.dir, "keys.yaml"), "keys:\n  - {principal: cam-9, sha256: "+sha(keyCam)+"}\n  - {principal: door-1, sha256: "+sha(keyDoor)+"}\n", 0o644)
	log, _ := newLogger(t)
	svc, err := New(Options{ConfigFile: s.config, Logger: log, Clock: clock.NewFake(time.Unix(1_763_800_000, 0))})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveFront(t, svc)
	return svc, srv
}

func get(t *testing.T, srv *testFront, path, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPAPI(t *testing.T) {
	svc, srv := httpService(t)
	camUID := strconv.FormatUint(uint64(DeviceUID("cam-9")), 10)
	tests := []struct {
		name, path, key string
		status          int
		want            string // a substring of the body
	}{
		{"healthz", "/healthz", "", 200, "ok"},
		{"not ready without broker", "/readyz", "", 503, "not ready"},
		{"no key", "/v1/tokens", "", 401, "missing or unknown API key"},
		{"wrong key", "/v1/tokens", "nope", 401, `"code":"unauthorized"`},
		{"tokens", "/v1/tokens?names=video", keyCam, 200, `"channel":"cam-cam-9"`},
		{"all tokens", "/v1/tokens", keyCam, 200, `"name":"signal"`},
		{"unknown name", "/v1/tokens?names=teleport", keyCam, 400, "invalid_request"},
		{"bad name", "/v1/tokens?names=a%20b", keyCam, 400, "invalid_request"},
		{"too many names", "/v1/tokens?names=video" + strings.Repeat(",video", 32), keyCam, 400, "max 32"},
		{"other rule's token", "/v1/tokens?names=doorbell", keyCam, 403, "forbidden"},
		{"rtc own channel", "/rtc/cam-cam-9/publisher/uid/" + camUID + "/?expiry=60", keyCam, 200, `"rtcToken":"007`},
		{"rtc no slash", "/rtc/cam-cam-9/subscriber/uid/" + camUID, keyCam, 200, `"rtcToken":"007`},
		{"rtc other channel", "/rtc/cam-cam-8/publisher/uid/" + camUID + "/", keyCam, 403, "no such token"},
		{"rtc other uid", "/rtc/cam-cam-9/publisher/uid/12345/", keyCam, 403, "no such token"},
		{"rtc publisher on subscriber grant", "/rtc/door-door-1/publisher/uid/7/", keyDoor, 403, "no such token"},
		{"rtc subscriber grant", "/rtc/door-door-1/subscriber/uid/7/", keyDoor, 200, "rtcToken"},
		{"rtc any uid grant", "/rtc/lobby/publisher/userAccount/alice/", keyDoor, 200, "rtcToken"},
		{"rtc bad role", "/rtc/lobby/king/uid/7/", keyDoor, 400, "role"},
		{"rtc bad type", "/rtc/lobby/publisher/email/7/", keyDoor, 400, "uid or userAccount"},
		{"rtc bad uid", "/rtc/lobby/publisher/uid/x/", keyDoor, 400, "not a 32-bit"},
		{"rtc bad expiry", "/rtc/lobby/publisher/uid/7/?expiry=-1", keyDoor, 400, "expiry"},
		{"rtm own user", "/rtm/cam-9/", keyCam, 200, `"rtmToken":"007`},
		{"rtm other user", "/rtm/cam-8/", keyCam, 403, "forbidden"},
		{"metrics", "/metrics", "", 200, `agora_issuer_requests_total{result="ok",transport="http"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := get(t, srv, tt.path, tt.key)
			if status != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("GET %s: %d %s\nwant %d with %q", tt.path, status, body, tt.status, tt.want)
			}
			if strings.Contains(body, testCert) {
				t.Fatal("the certificate is in a response")
			}
		})
	}

	// The classic endpoint's token is what the policy allows, shortened
	// to ?expiry.
	_, body := get(t, srv, "/rtc/cam-cam-9/publisher/uid/"+camUID+"/?expiry=60", keyCam)
	var out struct{ RTCToken string }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	tok, kid, err := svc.state.Load().signer.Verify(out.RTCToken)
	if err != nil || kid != "primary" {
		t.Fatalf("verify: %v", err)
	}
	checkToken(t, tok, Grant{Name: "video", Service: ServiceRTC, Channel: "cam-cam-9", UID: camUID, Role: "publisher", TTL: time.Minute})

	// /v1/tokens returns a wire.Reply.
	_, body = get(t, srv, "/v1/tokens", keyCam)
	rep, err := wire.DecodeReply([]byte(body))
	if err != nil || len(rep.Tokens) != 2 {
		t.Fatalf("reply %s: %v", body, err)
	}
	if _, err := accesstoken.Parse(rep.Tokens[0].Token); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPRateLimit(t *testing.T) {
	_, srv := httpService(t) // http.key_rate: burst 20
	for i := 0; i < 20; i++ {
		if status, body := get(t, srv, "/rtm/cam-9/", keyCam); status != 200 {
			t.Fatalf("request %d: %d %s", i, status, body)
		}
	}
	status, body := get(t, srv, "/rtm/cam-9/", keyCam)
	if status != http.StatusTooManyRequests || !strings.Contains(body, `"retry_after":1`) {
		t.Fatalf("21st request: %d %s", status, body)
	}
}

func TestParseAPIKeys(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"bad hash", "keys: [{principal: a, sha256: xyz}]", "keys[0].sha256"},
		{"bad principal", "keys: [{principal: \"a b\", sha256: " + sha("k") + "}]", "keys[0].principal"},
		{"duplicate", "keys: [{principal: a, sha256: " + sha("k") + "}, {principal: b, sha256: " + sha("k") + "}]", "keys[1].sha256 (line 1): the same key"},
		{"unknown key", "keys: []\nextra: 1", `unknown key "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseAPIKeys("k.yaml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	k, err := parseAPIKeys("k.yaml", []byte("keys: [{principal: a, sha256: "+sha("k1")+"}, {principal: b, sha256: "+sha("k2")+"}]"))
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := k.lookup("k2"); !ok || p != "b" {
		t.Fatalf("lookup k2 = %q %v", p, ok)
	}
	if _, ok := k.lookup("k3"); ok {
		t.Fatal("an unknown key was accepted")
	}
}
