package issuer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"agoratokens/accesstoken"
	"agoratokens/clock"
	"agoratokens/internal/testlog"
)

// The issuer clock of these tests.
var apiNow = time.Unix(1_763_800_000, 0)

// apiEnv is a service (not run: the HTTP API needs no broker) with named
// keys made by AddAPIKey, served through a real HTTP server.
type apiEnv struct {
	svc      *Service
	srv      *testFront
	setup    *setup
	keysFile string
	keys     map[string]string // name → key
	logs     *testlog.Buffer
	clock    *clock.Fake
}

// Keys the environment makes, by name.
var apiKeySpecs = []APIKeySpec{
	{Name: "web", Channels: []string{"room-*", "lobby"}, MaxTTL: 2 * time.Hour},
	{Name: "narrow", Channels: []string{"room-1"}, UIDs: "1000-1999", Services: []string{"rtc"}, MaxTTL: 10 * time.Minute},
	{Name: "slow", Channels: []string{"room-1"}, UIDs: "1000-1999", Services: []string{"rtc"}, MaxTTL: 10 * time.Minute, Rate: "6/min"},
	{Name: "wild", Channels: []string{"*"}, Services: []string{"rtc"}},
	{Name: "chat-few", Services: []string{"chat"}, UIDs: "1-9"},
}

// newAPIEnv writes a setup whose config gets extra lines under http:.
func newAPIEnv(t *testing.T, httpExtra string) *apiEnv {
	t.Helper()
	s := writeSetup(t, `broker: {url: "tcp://127.0.0.1:1"}`, "listen: 127.0.0.1:0\nhttp:\n  api_keys_file: keys.yaml\n"+httpExtra)
	e := &apiEnv{setup: s, keysFile: filepath.Join(s.dir, "keys.yaml"), keys: map[string]string{}, clock: clock.NewFake(apiNow)}
	for _, spec := range apiKeySpecs {
		k, err := AddAPIKey(e.keysFile, spec, apiNow)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[spec.Name] = k
	}
	e.newService(t)
	return e
}

func (e *apiEnv) newService(t *testing.T) {
	t.Helper()
	log, buf := newLogger(t)
	e.logs = buf
	svc, err := New(Options{ConfigFile: e.setup.config, Logger: log, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	e.srv = serveFront(t, svc)
	t.Cleanup(func() {
		logs := buf.String()
		for name, k := range e.keys {
			if strings.Contains(logs, k) {
				t.Errorf("a log line contains the API key %q", name)
			}
		}
	})
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request with key (none when "") and checks that nothing
// secret or internal comes back.
func (e *apiEnv) do(t *testing.T, method, path, key, body string, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{resp.StatusCode, resp.Header, string(b)}
	if strings.Contains(r.body, testCert) || strings.Contains(r.body, testCert2) {
		t.Fatalf("%s %s: the certificate is in the response", method, path)
	}
	if r.status >= 500 {
		t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
	}
	return r
}

// describe renders a verified token's contents, for exact comparison.
func describe(t *testing.T, svc *Service, token string) string {
	t.Helper()
	tok, kid, err := svc.state.Load().signer.Verify(token)
	if err != nil || kid != "primary" {
		t.Fatalf("token does not verify with the certificate: %v", err)
	}
	if tok.AppID != testAppID || tok.IssueTs != uint32(svc.clk.Wall().Unix()) {
		t.Fatalf("token app id %q issued %d", tok.AppID, tok.IssueTs)
	}
	parts := []string{fmt.Sprintf("expire=%d", tok.Expire)}
	for _, s := range tok.Services {
		p := s.Type.String() + "{"
		add := func(k, v string) {
			if v != "" {
				p += k + "=" + v + " "
			}
		}
		add("ch", s.Channel)
		add("uid", s.UID)
		add("user", s.UserID)
		add("room", s.RoomUUID)
		add("uuid", s.UserUUID)
		if s.Type == accesstoken.ServiceAPaaS {
			add("role", strconv.Itoa(int(s.Role)))
		}
		var privs []string
		for _, pr := range s.Privileges {
			privs = append(privs, fmt.Sprintf("%d:%d", pr.Key, pr.Expire))
		}
		parts = append(parts, p+strings.Join(privs, ",")+"}")
	}
	return strings.Join(parts, " ")
}

func rtcPub(ch, uid string, ttl int) string {
	return fmt.Sprintf("expire=%d rtc{ch=%s %s1:%[1]d,2:%[1]d,3:%[1]d,4:%[1]d}", ttl, ch, uidPart(uid))
}

func rtcSub(ch, uid string, ttl int) string {
	return fmt.Sprintf("expire=%d rtc{ch=%s %s1:%[1]d}", ttl, ch, uidPart(uid))
}

func uidPart(uid string) string {
	if uid == "" {
		return ""
	}
	return "uid=" + uid + " "
}

// field returns one string field of a JSON object body.
func field(t *testing.T, body, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	s, ok := m[name].(string)
	if !ok {
		t.Fatalf("body %s has no string %q", body, name)
	}
	return s
}

func TestHTTPAPIShapes(t *testing.T) {
	e := newAPIEnv(t, "")
	web := e.keys["web"]
	md5hex := func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
	tests := []struct {
		name, method, path, body string
		fields                   []string // JSON fields holding tokens, in order; none: a text/plain token
		want                     []string // describe() of each token
	}{
		{"getToken rtc uid", "POST", "/getToken", `{"tokenType":"rtc","channel":"room-1","role":"publisher","uid":"1234","expire":600}`,
			[]string{"token"}, []string{rtcPub("room-1", "1234", 600)}},
		{"getToken rtc account, numeric role, default expire", "POST", "/getToken", `{"tokenType":"RTC","channel":"room-1","role":2,"uid":"alice"}`,
			[]string{"token"}, []string{rtcSub("room-1", "alice", 3600)}},
		{"getToken rtc uid 0 as a number", "POST", "/getToken", `{"tokenType":"rtc","channel":"lobby","role":"Subscriber","uid":0,"expire":60}`,
			[]string{"token"}, []string{rtcSub("lobby", "", 60)}},
		{"getToken rtm", "POST", "/getToken", `{"tokenType":"rtm","uid":"alice","expire":120}`,
			[]string{"token"}, []string{"expire=120 rtm{user=alice 1:120}"}},
		{"getToken chat user", "POST", "/getToken", `{"tokenType":"chat","uid":"bob"}`,
			[]string{"token"}, []string{"expire=3600 chat{user=bob 1:3600}"}},
		{"getToken chat app", "POST", "/getToken", `{"tokenType":"chat","expire":300}`,
			[]string{"token"}, []string{"expire=300 chat{2:300}"}},
		{"rtc numeric publisher", "GET", "/rtc/room-1/1/uid/42/?expiry=300", "",
			[]string{"rtcToken"}, []string{rtcPub("room-1", "42", 300)}},
		{"rtc account subscriber, no slash", "GET", "/rtc/room-1/SUBSCRIBER/userAccount/bob", "",
			[]string{"rtcToken"}, []string{rtcSub("room-1", "bob", 3600)}},
		{"rtc channel with a space and symbols", "GET", "/rtc/room-a%20b!@/2/uid/7/", "",
			[]string{"rtcToken"}, []string{rtcSub("room-a b!@", "7", 3600)}},
		{"rtm", "GET", "/rtm/alice/?expiry=120", "",
			[]string{"rtmToken"}, []string{"expire=120 rtm{user=alice 1:120}"}},
		{"rte one uid", "GET", "/rte/room-1/publisher/uid/42/?expiry=900", "",
			[]string{"rtcToken", "rtmToken"}, []string{rtcPub("room-1", "42", 900), "expire=900 rtm{user=42 1:900}"}},
		{"rte rtm uid", "GET", "/rte/room-1/2/uid/42/carol", "",
			[]string{"rtcToken", "rtmToken"}, []string{rtcSub("room-1", "42", 3600), "expire=3600 rtm{user=carol 1:3600}"}},
		{"chat app", "GET", "/chat/app/?expiry=60", "",
			[]string{"chatToken"}, []string{"expire=60 chat{2:60}"}},
		{"chat account", "GET", "/chat/account/dave", "",
			[]string{"chatToken"}, []string{"expire=3600 chat{user=dave 1:3600}"}},
		{"spring chat app", "GET", "/chat/app/token", "",
			nil, []string{"expire=3600 chat{2:3600}"}},
		{"spring chat user", "GET", "/chat/user/erin/token", "",
			nil, []string{"expire=3600 chat{user=erin 1:3600}"}},
		{"express rtm", "POST", "/rtmtoken", `{"user":"frank"}`,
			[]string{"token"}, []string{"expire=3600 rtm{user=frank 1:3600}"}},
		{"education app", "GET", "/education/app/", "",
			[]string{"token"}, []string{"expire=3600 apaas{role=-1 3:3600}"}},
		{"education user", "GET", "/education/user/u-1/?expiry=600", "",
			[]string{"token"}, []string{"expire=600 apaas{uuid=u-1 role=-1 2:600}"}},
		{"education room user", "GET", "/education/room/room-9/2/u-1/?expiry=900", "",
			[]string{"token"}, []string{"expire=900 rtm{user=u-1 1:900} chat{user=" + md5hex("u-1") + " 1:900} apaas{room=room-9 uuid=u-1 role=2 1:900}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.method, tt.path, web, tt.body)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if cc := r.header.Get("Cache-Control"); cc != "private, no-cache, no-store, must-revalidate" {
				t.Errorf("Cache-Control %q", cc)
			}
			if tt.fields == nil {
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type %q, want text/plain", ct)
				}
				if got := describe(t, e.svc, r.body); got != tt.want[0] {
					t.Fatalf("token %s\nwant      %s", got, tt.want[0])
				}
				return
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var m map[string]any
			_ = json.Unmarshal([]byte(r.body), &m)
			if len(m) != len(tt.fields) {
				t.Errorf("body %s: want exactly the fields %v", r.body, tt.fields)
			}
			for i, f := range tt.fields {
				if got := describe(t, e.svc, field(t, r.body, f)); got != tt.want[i] {
					t.Fatalf("%s %s\nwant %s", f, got, tt.want[i])
				}
			}
		})
	}

	t.Run("ping", func(t *testing.T) {
		r := e.do(t, "GET", "/ping", "", "")
		if r.status != 200 || strings.TrimSpace(r.body) != `{"message":"pong"}` {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("express rtc picks a non-zero uid", func(t *testing.T) {
		r := e.do(t, "POST", "/rtctoken", web, `{"channel":"room-2","isPublisher":true}`)
		var out struct {
			UID   uint32 `json:"uid"`
			Token string `json:"token"`
		}
		if err := json.Unmarshal([]byte(r.body), &out); err != nil || r.status != 200 || out.UID == 0 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if got, want := describe(t, e.svc, out.Token), rtcPub("room-2", strconv.FormatUint(uint64(out.UID), 10), 3600); got != want {
			t.Fatalf("token %s\nwant  %s", got, want)
		}
		r = e.do(t, "POST", "/rtctoken", web, `{"channel":"room-2"}`)
		if err := json.Unmarshal([]byte(r.body), &out); err != nil || out.UID == 0 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if got, want := describe(t, e.svc, out.Token), rtcSub("room-2", strconv.FormatUint(uint64(out.UID), 10), 3600); got != want {
			t.Fatalf("token %s\nwant  %s", got, want)
		}
	})
	t.Run("metrics per endpoint", func(t *testing.T) {
		r := e.do(t, "GET", "/metrics", "", "")
		for _, want := range []string{`agora_issuer_http_requests_total{endpoint="getToken",result="ok"} 6`,
			`agora_issuer_http_requests_total{endpoint="rte",result="ok"} 2`} {
			if !strings.Contains(r.body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

func TestHTTPAPIAuth(t *testing.T) {
	e := newAPIEnv(t, "")
	narrow, wild, few := e.keys["narrow"], e.keys["wild"], e.keys["chat-few"]
	tests := []struct {
		name, method, path, key, body string
		status                        int
		want                          string // in the body
	}{
		{"no key", "GET", "/rtc/room-1/1/uid/1500/", "", "", 401, `"code":"unauthorized"`},
		{"wrong key", "GET", "/rtc/room-1/1/uid/1500/", "atk_nope", "", 401, `"code":"unauthorized"`},
		{"not bearer", "GET", "/rtc/room-1/1/uid/1500/", "", "", 401, `"code":"unauthorized"`},
		{"other channel", "GET", "/rtc/room-2/1/uid/1500/", narrow, "", 403, `may not mint tokens for channel \"room-2\"`},
		{"uid outside the ranges", "GET", "/rtc/room-1/1/uid/5/", narrow, "", 403, `uid \"5\"`},
		{"uid 0 outside the ranges", "GET", "/rtc/room-1/1/uid/0/", narrow, "", 403, `uid \"0\"`},
		{"account with uid ranges", "GET", "/rtc/room-1/1/userAccount/alice/", narrow, "", 403, `uid \"alice\"`},
		{"service not granted", "GET", "/rtm/1500/", narrow, "", 403, "may not mint rtm tokens"},
		{"over the key's max ttl", "GET", "/rtc/room-1/1/uid/1500/?expiry=601", narrow, "", 403, "over the 600s"},
		{"wildcard without a * glob", "GET", "/rtc/*/1/uid/1/", e.keys["web"], "", 403, `channel \"*\"`},
		{"app token with uid ranges", "GET", "/chat/app/", few, "", 403, "may not mint app tokens"},
		{"chat user outside ranges", "GET", "/chat/account/bob/", few, "", 403, `uid \"bob\"`},
		{"grant key on /v1/tokens", "GET", "/v1/tokens", e.keys["web"], "", 403, "principal keys"},
		{"inside the grant", "GET", "/rtc/room-1/publisher/uid/1500/", narrow, "", 200, "rtcToken"},
		{"wildcard with a * glob", "GET", "/rtc/*/1/uid/1/", wild, "", 200, "rtcToken"},
		{"chat user inside ranges", "GET", "/chat/account/5/", few, "", 200, "chatToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r response
			if tt.name == "not bearer" {
				r = e.do(t, tt.method, tt.path, "", tt.body, "Authorization", "Basic "+narrow)
			} else {
				r = e.do(t, tt.method, tt.path, tt.key, tt.body)
			}
			if r.status != tt.status || !strings.Contains(r.body, tt.want) {
				t.Fatalf("%d %s\nwant %d with %s", r.status, r.body, tt.status, tt.want)
			}
			if r.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}

	// The slow key gets its max ttl by default, then its rate limit
	// (6/min: burst 1, one more every 10 s), then a uid inside its
	// ranges from /rtctoken.
	e2 := newAPIEnv(t, "")
	r := e2.do(t, "POST", "/getToken", e2.keys["slow"], `{"tokenType":"rtc","channel":"room-1","role":"publisher","uid":1999}`)
	if r.status != 200 || describe(t, e2.svc, field(t, r.body, "token")) != rtcPub("room-1", "1999", 600) {
		t.Fatalf("narrow key default ttl: %d %s", r.status, r.body)
	}
	r = e2.do(t, "POST", "/rtctoken", e2.keys["slow"], `{"channel":"room-1"}`)
	if r.status != 429 || r.header.Get("Retry-After") != "10" || !strings.Contains(r.body, `"retry_after":10`) {
		t.Fatalf("second request of a 6/min key: %d %v %s", r.status, r.header, r.body)
	}
	e2.clock.Advance(10 * time.Second)
	r = e2.do(t, "POST", "/rtctoken", e2.keys["slow"], `{"channel":"room-1"}`)
	var out struct{ UID uint32 }
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || r.status != 200 || out.UID < 1000 || out.UID > 1999 {
		t.Fatalf("/rtctoken with uid ranges: %d %s", r.status, r.body)
	}
	// Another key is not limited by this one's bucket.
	if r := e2.do(t, "GET", "/rtc/*/1/uid/1/", e2.keys["wild"], ""); r.status != 200 {
		t.Fatalf("another key: %d %s", r.status, r.body)
	}
}

func TestHTTPAPIKeysReload(t *testing.T) {
	e := newAPIEnv(t, "")
	ctx := context.Background()
	web := e.keys["web"]
	if r := e.do(t, "GET", "/rtm/alice/", web, ""); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if err := RevokeAPIKey(e.keysFile, "web"); err != nil {
		t.Fatal(err)
	}
	late, err := AddAPIKey(e.keysFile, APIKeySpec{Name: "late", Services: []string{"rtm"}}, apiNow)
	if err != nil {
		t.Fatal(err)
	}
	e.keys["late"] = late
	// Until the reload (SIGHUP), the old keys are in force.
	if r := e.do(t, "GET", "/rtm/alice/", late, ""); r.status != 401 {
		t.Fatalf("new key before reload: %d %s", r.status, r.body)
	}
	if err := e.svc.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if r := e.do(t, "GET", "/rtm/alice/", web, ""); r.status != 401 || !strings.Contains(r.body, "unauthorized") {
		t.Fatalf("revoked key: %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/rtm/alice/", late, ""); r.status != 200 {
		t.Fatalf("new key after reload: %d %s", r.status, r.body)
	}
	// A broken keys file keeps the keys in force.
	writeFile(t, e.keysFile, "keys: [{name: x, sha256: nothex}]\n", 0o600)
	if err := e.svc.Reload(ctx); err == nil || !strings.Contains(err.Error(), "keys[0].sha256") {
		t.Fatalf("reload of a broken keys file: %v", err)
	}
	if r := e.do(t, "GET", "/rtm/alice/", late, ""); r.status != 200 {
		t.Fatalf("after a failed reload: %d %s", r.status, r.body)
	}
}

func TestHTTPAPIBadInput(t *testing.T) {
	e := newAPIEnv(t, "")
	web := e.keys["web"]
	long := strings.Repeat("a", 65)
	tests := []struct {
		name, method, path, body, field string
	}{
		{"channel charset", "GET", "/rtc/bad%22chan/1/uid/1/", "", "channel"},
		{"channel length", "GET", "/rtc/" + long + "/1/uid/1/", "", "channel"},
		{"unknown role", "GET", "/rtc/room-1/king/uid/1/", "", "role"},
		{"role 3", "GET", "/rtc/room-1/3/uid/1/", "", "role"},
		{"unknown token type", "GET", "/rtc/room-1/1/email/1/", "", "tokentype"},
		{"uid not a number", "GET", "/rtc/room-1/1/uid/x/", "", "uid"},
		{"uid out of range", "GET", "/rtc/room-1/1/uid/4294967296/", "", "uid"},
		{"uid negative", "GET", "/rtc/room-1/1/uid/-1/", "", "uid"},
		{"expiry 0", "GET", "/rtc/room-1/1/uid/1/?expiry=0", "", "expiry"},
		{"expiry negative", "GET", "/rtm/alice/?expiry=-5", "", "expiry"},
		{"expiry over 24h", "GET", "/chat/app/?expiry=86401", "", "expiry"},
		{"expiry badly escaped", "GET", "/rtm/alice/?expiry=%zz", "", "expiry"},
		{"expiry not a number", "GET", "/rtc/room-1/1/uid/1/?expiry=soon", "", "expiry"},
		{"rte channel", "GET", "/rte/bad%22chan/1/uid/1/", "", "channel"},
		{"rte uid", "GET", "/rte/room-1/1/uid/x/", "", "rtcuid"},
		{"account too long", "GET", "/rtm/" + strings.Repeat("u", 256) + "/", "", "uid"},
		{"education role", "GET", "/education/room/r/teacher/u/", "", "role"},
		{"getToken unknown type", "POST", "/getToken", `{"tokenType":"video","channel":"room-1"}`, "tokenType"},
		{"getToken no type", "POST", "/getToken", `{"channel":"room-1"}`, "tokenType"},
		{"getToken unknown role", "POST", "/getToken", `{"tokenType":"rtc","channel":"room-1","role":"king"}`, "role"},
		{"getToken no role", "POST", "/getToken", `{"tokenType":"rtc","channel":"room-1"}`, "role"},
		{"getToken channel", "POST", "/getToken", `{"tokenType":"rtc","channel":"a/b","role":1}`, "channel"},
		{"getToken no channel", "POST", "/getToken", `{"tokenType":"rtc","role":1}`, "channel"},
		{"getToken uid range", "POST", "/getToken", `{"tokenType":"rtc","channel":"room-1","role":1,"uid":"4294967296"}`, "uid"},
		{"getToken uid negative number", "POST", "/getToken", `{"tokenType":"rtc","channel":"room-1","role":1,"uid":-1}`, "uid"},
		{"getToken uid fraction", "POST", "/getToken", `{"tokenType":"rtc","channel":"room-1","role":1,"uid":1.5}`, "uid"},
		{"getToken uid type", "POST", "/getToken", `{"tokenType":"rtc","channel":"room-1","role":1,"uid":true}`, "uid"},
		{"getToken expire 0", "POST", "/getToken", `{"tokenType":"rtm","uid":"a","expire":0}`, "expire"},
		{"getToken expire over 24h", "POST", "/getToken", `{"tokenType":"rtm","uid":"a","expire":90000}`, "expire"},
		{"getToken expire type", "POST", "/getToken", `{"tokenType":"rtm","uid":"a","expire":"1h"}`, "expire"},
		{"getToken rtm no uid", "POST", "/getToken", `{"tokenType":"rtm"}`, "uid"},
		{"getToken not JSON", "POST", "/getToken", `tokenType=rtc`, "body"},
		{"getToken empty", "POST", "/getToken", ``, "body"},
		{"getToken too big", "POST", "/getToken", `{"channel":"` + strings.Repeat("x", maxBodyBytes) + `"}`, "body"},
		{"express isPublisher type", "POST", "/rtctoken", `{"channel":"room-1","isPublisher":"yes"}`, "isPublisher"},
		{"express channel", "POST", "/rtctoken", `{"channel":"","isPublisher":true}`, "channel"},
		{"express rtm user", "POST", "/rtmtoken", `{}`, "user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.method, tt.path, web, tt.body)
			var out errorJSON
			if err := json.Unmarshal([]byte(r.body), &out); err != nil || r.status != 400 ||
				out.Error.Code != "invalid_request" || out.Error.Field != tt.field ||
				!strings.HasPrefix(out.Error.Message, tt.field+": ") {
				t.Fatalf("%d %s\nwant 400 invalid_request naming %q", r.status, r.body, tt.field)
			}
		})
	}
	// Unknown endpoints answer a JSON 404, never a 5xx.
	for _, p := range []string{"/rtc/room-1", "/nope", "/chat/", "/rtc/a/b/c/d/e/f"} {
		if r := e.do(t, "GET", p, web, ""); r.status != 404 || !strings.Contains(r.body, `"not_found"`) {
			t.Fatalf("GET %s: %d %s", p, r.status, r.body)
		}
	}
}

func TestHTTPAPICORS(t *testing.T) {
	e := newAPIEnv(t, "  cors_allow_origin: [\"https://app.example.com\"]\n")
	pre := func(origin string) response {
		return e.do(t, "OPTIONS", "/getToken", "", "", "Origin", origin,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	}
	r := pre("https://app.example.com")
	h := r.header
	if r.status != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || !slices.Contains(h.Values("Vary"), "Origin") {
		t.Fatalf("allowed preflight: %d %v", r.status, h)
	}
	r = pre("https://evil.example.com")
	if r.status != 403 || r.header.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(r.body, `"forbidden"`) {
		t.Fatalf("refused preflight: %d %v %s", r.status, r.header, r.body)
	}
	r = e.do(t, "GET", "/rtm/alice/", e.keys["web"], "", "Origin", "https://app.example.com")
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("allowed origin: %d %v", r.status, r.header)
	}
	r = e.do(t, "GET", "/rtm/alice/", e.keys["web"], "", "Origin", "https://evil.example.com")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin got %q", r.header.Get("Access-Control-Allow-Origin"))
	}

	// Without http.cors_allow_origin, $CORS_ALLOW_ORIGIN decides.
	t.Setenv("CORS_ALLOW_ORIGIN", "http://localhost:3000, https://b.example.com")
	e2 := newAPIEnv(t, "")
	for origin, want := range map[string]string{"http://localhost:3000": "http://localhost:3000",
		"https://b.example.com": "https://b.example.com", "https://c.example.com": ""} {
		if got := e2.do(t, "GET", "/ping", "", "", "Origin", origin).header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("origin %s: allow-origin %q, want %q", origin, got, want)
		}
	}
	t.Setenv("CORS_ALLOW_ORIGIN", "*")
	e3 := newAPIEnv(t, "")
	if got := e3.do(t, "OPTIONS", "/rtc/a/1/uid/1", "", "", "Origin", "https://any.example").header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("CORS_ALLOW_ORIGIN=*: allow-origin %q", got)
	}
}

func TestParseKeyGrantParts(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []uidRange
		err  bool
	}{
		{"", nil, false},
		{"42", []uidRange{{42, 42}}, false},
		{"1-9, 100-199", []uidRange{{1, 9}, {100, 199}}, false},
		{"9-1", nil, true},
		{"x", nil, true},
		{"1-4294967296", nil, true},
	} {
		got, err := ParseUIDRanges(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("ParseUIDRanges(%q) = %v, %v", tt.in, got, err)
		}
	}
	for in, want := range map[string]RateConfig{"600/min": {600, 100}, "10/s": {600, 100}, "6/min": {6, 1}, "120/h": {2, 1}} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0/min", "-1/min", "10", "10/day"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
	// Keys file errors name the key.
	for src, want := range map[string]string{
		"keys: [{sha256: " + sha("k") + "}]":                                               "keys[0] (line 1): needs a name",
		"keys: [{name: a, sha256: " + sha("k") + ", services: [video]}]":                   "keys[0].services[0]",
		"keys: [{name: a, sha256: " + sha("k") + ", uids: abc}]":                           "keys[0].uids",
		"keys: [{name: a, sha256: " + sha("k") + ", max_ttl: 48h}]":                        "keys[0].max_ttl",
		"keys: [{name: a, sha256: " + sha("k") + ", rate: fast}]":                          "keys[0].rate",
		"keys: [{name: a, sha256: " + sha("k") + ", channels: [\"[\"]}]":                   "keys[0].channels[0]",
		"keys: [{principal: a, sha256: " + sha("k") + ", channels: [x]}]":                  "a principal key takes its grant from the policy",
		"keys: [{name: a, sha256: " + sha("k") + "}, {name: a, sha256: " + sha("j") + "}]": "used twice",
	} {
		if _, err := parseAPIKeys("k.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", src, err, want)
		}
	}
}

func TestListAPIKeysShowsNoKey(t *testing.T) {
	e := newAPIEnv(t, "")
	infos, err := ListAPIKeys(e.keysFile)
	if err != nil || len(infos) != len(apiKeySpecs) || infos[1].Name != "narrow" || infos[1].UIDs != "1000-1999" {
		t.Fatalf("%+v %v", infos, err)
	}
	b, _ := json.Marshal(infos)
	for _, k := range e.keys {
		h := sha(k)
		if bytes.Contains(b, []byte(k)) || bytes.Contains(b, []byte(h)) {
			t.Fatal("the listing holds a key or its hash")
		}
	}
	if _, err := AddAPIKey(e.keysFile, APIKeySpec{Name: "web"}, apiNow); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("duplicate name: %v", err)
	}
	if err := RevokeAPIKey(e.keysFile, "ghost"); err == nil {
		t.Fatal("revoking an unknown key succeeded")
	}
}

// listen runs the service's real listener (serveHTTP, as Run does) until
// the test ends.
func (e *apiEnv) listen(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	if err := e.svc.serveHTTP(gctx, g, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := g.Wait(); err != nil {
			t.Errorf("http server: %v", err)
		}
	})
	return e.svc.HTTPAddr()
}

// noLeaks checks, after every other cleanup of t, that no goroutine
// started during the test is left (the real listener's included).
func noLeaks(t *testing.T) {
	t.Helper()
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, fasthttpOwn...)
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

func TestHTTPAPIAnonymous(t *testing.T) {
	noLeaks(t)
	e := newAPIEnv(t, "  insecure_allow_anonymous: {channels: [\"test-*\"], max_ttl: 5m}\n")
	addr := e.listen(t)
	if !strings.Contains(e.logs.String(), "INSECURE: http.insecure_allow_anonymous is set") {
		t.Fatalf("no loud warning at start:\n%s", e.logs.String())
	}
	get := func(path, key string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The IoT page's Kotlin client, unmodified: role 1, no key.
	status, body := get("/rtc/test-1/1/uid/7/?expiry=300", "")
	if status != 200 || describe(t, e.svc, field(t, body, "rtcToken")) != rtcPub("test-1", "7", 300) {
		t.Fatalf("anonymous rtc: %d %s", status, body)
	}
	status, body = get("/rtc/test-1/1/uid/7/", "")
	if status != 200 || describe(t, e.svc, field(t, body, "rtcToken")) != rtcPub("test-1", "7", 300) {
		t.Fatalf("anonymous default ttl is its max ttl: %d %s", status, body)
	}
	for path, want := range map[string]string{
		"/rtc/prod-1/1/uid/7/":             "anonymous callers may not mint tokens for channel",
		"/rtc/test-1/1/uid/7/?expiry=3600": "over the 300s anonymous callers may ask for",
	} {
		if status, body := get(path, ""); status != 403 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %s", path, status, body)
		}
	}
	if n := strings.Count(e.logs.String(), "INSECURE: serving a caller without an API key"); n != 1 {
		t.Errorf("the first anonymous request is warned about %d times, want once", n)
	}
	var check bytes.Buffer
	l, err := Load(e.setup.config)
	if err != nil {
		t.Fatal(err)
	}
	Check(e.setup.config, l, &check)
	if !strings.Contains(check.String(), "INSECURE: callers without a key may mint tokens") {
		t.Errorf("check-config does not flag anonymous mode:\n%s", check.String())
	}
	// A wrong key is not anonymous: it is refused.
	if status, _ := get("/rtc/test-1/1/uid/7/", "atk_wrong"); status != 401 {
		t.Errorf("wrong key with anonymous on: %d", status)
	}
}

func TestHTTPAPITLSReload(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	writePair := func(name string) *x509.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		writeFile(t, filepath.Join(dir, "tls.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
		writeFile(t, filepath.Join(dir, "tls.key"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})), 0o600)
		c, _ := x509.ParseCertificate(der)
		return c
	}
	first := writePair("first")
	e := newAPIEnv(t, "  tls_cert_file: "+filepath.Join(dir, "tls.crt")+"\n  tls_key_file: "+filepath.Join(dir, "tls.key")+"\n")
	addr := e.listen(t)
	fetch := func(trust *x509.Certificate) (string, error) {
		pool := x509.NewCertPool()
		pool.AddCert(trust)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://"+addr+"/rtm/alice/", nil)
		req.Header.Set("Authorization", "Bearer "+e.keys["web"])
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	if body, err := fetch(first); err != nil || !strings.Contains(body, "rtmToken") {
		t.Fatalf("https with the first certificate: %v %s", err, body)
	}
	second := writePair("second")
	if err := e.svc.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if body, err := fetch(second); err != nil || !strings.Contains(body, "rtmToken") {
		t.Fatalf("https after reload: %v %s", err, body)
	}
	if _, err := fetch(first); err == nil {
		t.Fatal("the old certificate is still served after the reload")
	}
}

// A principal key gets through the seed endpoints what its device's
// policy grants, no more.
func TestHTTPAPIPrincipalKeys(t *testing.T) {
	svc, srv := httpService(t)
	camUID := strconv.FormatUint(uint64(DeviceUID("cam-9")), 10)
	do := func(method, path, key, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name, method, path, key, body string
		status                        int
		field, want                   string // the token's field and describe(); or a body substring
	}{
		{"getToken own channel", "POST", "/getToken", keyCam, `{"tokenType":"rtc","channel":"cam-cam-9","role":1,"uid":"` + camUID + `","expire":600}`,
			200, "token", rtcPub("cam-cam-9", camUID, 600)},
		{"getToken policy ttl caps the default", "POST", "/getToken", keyCam, `{"tokenType":"rtm","uid":"cam-9"}`,
			200, "token", "expire=1800 rtm{user=cam-9 1:1800}"},
		{"getToken other channel", "POST", "/getToken", keyCam, `{"tokenType":"rtc","channel":"cam-cam-8","role":1,"uid":"` + camUID + `"}`,
			403, "", "no such token"},
		{"chat own user", "GET", "/chat/account/door-1/", keyDoor, "", 200, "chatToken", "expire=3600 chat{user=door-1 1:3600}"},
		{"chat other user", "GET", "/chat/account/door-2/", keyDoor, "", 403, "", "no such token"},
		{"chat app not granted", "GET", "/chat/app/", keyDoor, "", 403, "", "no such token"},
		{"education room user", "GET", "/education/room/room-1/2/door-1/", keyDoor, "", 200, "token", ""},
		{"education other role", "GET", "/education/room/room-1/1/door-1/", keyDoor, "", 403, "", "no such token"},
		{"any-uid grant", "POST", "/getToken", keyDoor, `{"tokenType":"rtc","channel":"lobby","role":"publisher","uid":55}`,
			200, "token", rtcPub("lobby", "55", 3600)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := do(tt.method, tt.path, tt.key, tt.body)
			if status != tt.status {
				t.Fatalf("%d %s", status, body)
			}
			if tt.field == "" {
				if !strings.Contains(body, tt.want) {
					t.Fatalf("body %s, want %q", body, tt.want)
				}
				return
			}
			got := describe(t, svc, field(t, body, tt.field))
			if tt.want != "" && got != tt.want {
				t.Fatalf("token %s\nwant  %s", got, tt.want)
			}
		})
	}
	// The Express endpoint gives a principal its policy's uid.
	status, body := do("POST", "/rtctoken", keyCam, `{"channel":"cam-cam-9","isPublisher":true}`)
	if status != 200 || !strings.Contains(body, `"uid":`+camUID+",") {
		t.Fatalf("/rtctoken for a principal: %d %s", status, body)
	}
}

// FuzzCompatGetToken: no body makes POST /getToken fail with a 5xx or
// answer anything but a JSON object.
func FuzzCompatGetToken(f *testing.F) {
	for _, s := range []string{
		`{"tokenType":"rtc","channel":"room-1","role":"publisher","uid":"1234","expire":600}`,
		`{"tokenType":"chat"}`, `{"tokenType":"rtm","uid":7}`, `[]`, `null`, `{"expire":1e99}`,
		`{"uid":{"a":1}}`, `{"tokenType":"rtc","channel":"*","role":"2"}`, "\x00", `{"role":-1}`,
	} {
		f.Add(s)
	}
	// One service for every input (setting one up writes files); the
	// clock moves a minute per input so that the key's bucket refills.
	var once sync.Once
	var e *apiEnv
	f.Fuzz(func(t *testing.T, body string) {
		once.Do(func() { e = newAPIEnv(t, "") })
		e.clock.Advance(time.Minute)
		req := httptest.NewRequest("POST", "/getToken", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.keys["web"])
		rec := httptest.NewRecorder()
		e.svc.Handler().ServeHTTP(rec, req)
		var out map[string]any
		if rec.Code >= 500 || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
			t.Fatalf("%q: %d %s", body, rec.Code, rec.Body.String())
		}
	})
}

func TestHTTPConfigErrors(t *testing.T) {
	base := minimalConfig + "listen: 127.0.0.1:0\n"
	for src, want := range map[string]string{
		base + "http: {cors_allow_origin: [\"app.example.com\"]}":                 "http.cors_allow_origin[0]",
		base + "http: {tls_cert_file: c.pem}":                                     "tls_cert_file and tls_key_file go together",
		base + "http: {insecure_allow_anonymous: {max_ttl: 1m}}":                  "http.insecure_allow_anonymous.channels: missing",
		base + "http: {insecure_allow_anonymous: {channels: [a], services: [x]}}": "http.insecure_allow_anonymous.services[0]",
		base + "http: {key_rate: {per_minute: -1}}":                               "http.key_rate",
		minimalConfig + "http: {insecure_allow_anonymous: {channels: [a]}}":       "listen is empty",
		minimalConfig + "http: {tls_cert_file: c.pem, tls_key_file: k.pem}":       "listen is empty",
	} {
		if _, err := ParseConfig(strings.NewReader(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s\nerr %v, want %q", src, err, want)
		}
	}
	cfg, err := ParseConfig(strings.NewReader(base))
	if err != nil || cfg.HTTP.KeyRate != (RateConfig{DefaultKeyRatePerMin, DefaultKeyRateBurst}) {
		t.Fatalf("key rate default %+v %v", cfg.HTTP.KeyRate, err)
	}
}

// getTokenBodies are POST /getToken bodies for the flat decoder's tests:
// what clients send, and near misses that must go to encoding/json.
var getTokenBodies = []string{
	`{"tokenType":"rtc","channel":"bench-1","role":"publisher","uid":"42","expire":3600}`,
	" {\n\t\"tokenType\" : \"rtm\" , \"uid\" : \"bob\" }\r\n",
	`{"tokenType":"rtc","channel":"c","role":1,"uid":0,"expire":-5}`,
	`{}`, `{"uid":-0}`, `{"expire":0}`,
	`{"tokenType":"rtc","tokenType":"rtm"}`, `{"TokenType":"rtc"}`, `{"tokentype":"rtc"}`,
	`{"channel":"caf\u00e9"}`, `{"channel":"café"}`, `{"channel":"a\"b"}`, `{"channel":1}`,
	`{"expire":"3600"}`, `{"expire":1e3}`, `{"expire":3600.0}`, `{"expire":0123}`, `{"expire":99999999999999999999}`,
	`{"expire":null}`, `{"role":null}`, `{"uid":true}`, `{"other":"x"}`, `{"uid":"1"}x`, `{"uid":"1"`, `{"uid":"1",}`,
	`[1]`, `"x"`, `{"uid":{"a":1}}`, `{"uid" "1"}`, `{"role":-}`, `{"uid":"\u0000"}`, "{\"uid\":\"a\x01\"}",
}

// TestGetTokenBodyFlat: the flat decoder takes the bodies clients send
// and gives what encoding/json gives; it leaves the rest to encoding/json.
func TestGetTokenBodyFlat(t *testing.T) {
	takes := map[string]bool{getTokenBodies[0]: true, getTokenBodies[1]: true, getTokenBodies[2]: true,
		`{}`: true, `{"uid":-0}`: true, `{"expire":0}`: true}
	for _, body := range getTokenBodies {
		var fast getTokenBody
		ok := fast.decodeFlat([]byte(body))
		if ok != takes[body] {
			t.Errorf("%q: decodeFlat %v, want %v", body, ok, takes[body])
		}
		if !ok {
			if fast != (getTokenBody{}) {
				t.Errorf("%q: refused but changed the body to %+v", body, fast)
			}
			continue
		}
		checkFlatAsJSON(t, body, fast)
	}
	var b getTokenBody
	if !b.decodeFlat([]byte(getTokenBodies[2])) || b.Role != (flexString{"1", true, true}) || b.UID != (flexString{"0", true, true}) ||
		b.Expire == nil || *b.Expire != -5 || b.TokenType != "rtc" || b.Channel != "c" {
		t.Errorf("numbers: %+v", b)
	}
}

// checkFlatAsJSON fails t unless encoding/json decodes body to fast.
func checkFlatAsJSON(t *testing.T, body string, fast getTokenBody) {
	t.Helper()
	var slow getTokenBody
	if err := json.Unmarshal([]byte(body), &slow); err != nil {
		t.Fatalf("%q: the flat decoder took what encoding/json refuses: %v", body, err)
	}
	if (fast.Expire == nil) != (slow.Expire == nil) || fast.Expire != nil && *fast.Expire != *slow.Expire {
		t.Fatalf("%q: expire %v, encoding/json %v", body, fast.Expire, slow.Expire)
	}
	fast.Expire, slow.Expire = nil, nil
	if fast != slow {
		t.Fatalf("%q: flat %+v, encoding/json %+v", body, fast, slow)
	}
}

// FuzzGetTokenBodyFlat: whatever the flat decoder takes, encoding/json
// decodes to the same request.
func FuzzGetTokenBodyFlat(f *testing.F) {
	for _, b := range getTokenBodies {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var fast getTokenBody
		if fast.decodeFlat([]byte(body)) {
			checkFlatAsJSON(t, body, fast)
		} else if fast != (getTokenBody{}) {
			t.Fatalf("%q: refused but changed the body to %+v", body, fast)
		}
	})
}

// TestAppendJSONString: the escape table agrees with encoding/json on
// every byte.
func TestAppendJSONString(t *testing.T) {
	for c := 0; c < 256; c++ {
		s := "a" + string([]byte{byte(c)}) + "b"
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("byte %#x: %s, encoding/json %s", c, got, want)
		}
	}
	if got := string(tokenObject("rtcToken", "007eJx+/=", "rtmToken", "<&>")); got != `{"rtcToken":"007eJx+/=","rtmToken":"\u003c\u0026\u003e"}`+"\n" {
		t.Errorf("tokenObject: %s", got)
	}
}
