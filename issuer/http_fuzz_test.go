package issuer

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"agoratokens/clock"
	"agoratokens/wire"
)

// FuzzHTTPAPI sends arbitrary paths and queries to the HTTP API with a
// valid key. Whatever comes in, the handler does not panic, answers with
// one of the expected statuses, refuses with a stable error code and no
// token, and every token it hands out verifies.
func FuzzHTTPAPI(f *testing.F) {
	for _, s := range []string{
		"/v1/tokens", "/v1/tokens?names=video", "/v1/tokens?names=video,,signal", "/v1/tokens?names=%00",
		"/rtc/cam-cam-9/publisher/uid/0/", "/rtc/cam-cam-9/subscriber/userAccount/bob?expiry=60",
		"/rtc/cam-cam-9/admin/uid/1/", "/rtc/%2F/publisher/uid/4294967296/", "/rtc/lobby/publisher/uid/1/?expiry=-1",
		"/rtm/cam-9/", "/rtm/cam-9?expiry=0", "/rtm/%E2%82%AC/", "/readyz", "/healthz", "/nope",
	} {
		f.Add(s)
	}
	s := writeSetup(f, `broker: {url: "tcp://127.0.0.1:1"}`,
		"listen: 127.0.0.1:0\nhttp: {api_keys_file: keys.yaml}\nlimits: {rate: {per_minute: 1000000, burst: 1000000}}")
	writeFileTB(f, filepath.Join(s.dir, "keys.yaml"), "keys:\n  - {principal: cam-9, sha256: "+sha(keyCam)+"}\n", 0o644)
	log, _ := newLogger(f)
	svc, err := New(Options{ConfigFile: s.config, Logger: log, Clock: clock.NewFake(time.Unix(1_763_800_000, 0))})
	if err != nil {
		f.Fatal(err)
	}
	h := svc.Handler()
	signer := svc.state.Load().signer
	codes := []string{wire.CodeForbidden, wire.CodeInvalidRequest, wire.CodeRateLimited, wire.CodeUnavailable, codeUnauthorized, codeNotFound}
	f.Fuzz(func(t *testing.T, target string) {
		req, err := http.NewRequest("GET", "http://issuer"+target, nil)
		if err != nil || !strings.HasPrefix(target, "/") {
			return // not a request a client could send
		}
		req.Header.Set("Authorization", "Bearer "+keyCam)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.String()
		switch rec.Code {
		case 200:
		case 301, 307, 308, 400, 401, 403, 404, 405, 429, 503:
			if strings.Contains(body, "007") && strings.Contains(body, "token") {
				t.Fatalf("%s: %d with a token in the body: %s", target, rec.Code, body)
			}
		default:
			t.Fatalf("%s: status %d: %s", target, rec.Code, body)
		}
		var out struct {
			Error  *wire.ErrorBody `json:"error"`
			RTC    string          `json:"rtcToken"`
			RTM    string          `json:"rtmToken"`
			Tokens []wire.Grant    `json:"tokens"`
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			return
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s: a JSON answer that does not decode: %v: %s", target, err, body)
		}
		if out.Error != nil && !slices.Contains(codes, out.Error.Code) {
			t.Fatalf("%s: error code %q is not a stable one", target, out.Error.Code)
		}
		for _, tok := range append([]string{out.RTC, out.RTM}, grantTokens(out.Tokens)...) {
			if tok == "" {
				continue
			}
			if _, _, err := signer.Verify(tok); err != nil {
				t.Fatalf("%s: handed out a token that does not verify: %v", target, err)
			}
		}
	})
}

func grantTokens(gs []wire.Grant) []string {
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		out = append(out, g.Token)
	}
	return out
}
