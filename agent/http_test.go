package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/wire"
)

// tokenService speaks agora-token-service's endpoints with real tokens.
func tokenService(t *testing.T, bearer string) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	b := accesstoken.Builder{AppID: testAppID, Certificate: testCert}
	mux := http.NewServeMux()
	auth := func(w http.ResponseWriter, r *http.Request) bool {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+bearer {
			http.Error(w, "no", http.StatusUnauthorized)
			return false
		}
		return true
	}
	expiry := func(r *http.Request) uint32 {
		e, _ := strconv.Atoi(r.URL.Query().Get("expiry"))
		return uint32(e)
	}
	mux.HandleFunc("GET /rtc/{channel}/{role}/{kind}/{uid}/", func(w http.ResponseWriter, r *http.Request) {
		if !auth(w, r) {
			return
		}
		role, err := accesstoken.ParseRole(r.PathValue("role"))
		if err != nil || (r.PathValue("kind") != "uid" && r.PathValue("kind") != "userAccount") {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		tok, err := b.RTCWithAccount(r.PathValue("channel"), r.PathValue("uid"), role, expiry(r), expiry(r))
		if err != nil {
			t.Errorf("build: %v", err)
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"rtcToken": tok})
	})
	mux.HandleFunc("GET /rtm/{uid}/", func(w http.ResponseWriter, r *http.Request) {
		if !auth(w, r) {
			return
		}
		tok, err := b.RTM(r.PathValue("uid"), "", expiry(r))
		if err != nil {
			t.Errorf("build: %v", err)
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"rtmToken": tok})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &calls
}

func writeSecret(t *testing.T, v string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHTTPTokenServiceSource(t *testing.T) {
	srv, _ := tokenService(t, "key-1")
	y := "device_id: dev-1\nhttp:\n  url: " + srv.URL + "\n  bearer_token_file: " + writeSecret(t, "key-1") +
		"\n  kind: agora-token-service\n  fetch:\n" +
		"    - {name: video, service: rtc, channel: cam 42, uid: \"2882341273\", role: publisher, expiry: 2m}\n" +
		"    - {name: signal, service: rtm, uid: cam-42, expiry: 1h}\n" +
		"state_dir: " + t.TempDir() + "\n"
	cfg, err := ParseConfig(strings.NewReader(y), "/")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(*cfg, Deps{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := e.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	got := map[string]Token{}
	for len(got) < 2 {
		select {
		case x := <-ev:
			got[x.Name] = x.Token
		case <-time.After(waitLimit):
			t.Fatalf("tokens from the HTTP source: got %d, want 2", len(got))
		}
	}
	if v := got["video"]; v.Channel != "cam 42" || v.UID != "2882341273" || v.Lifetime() != 120 {
		t.Fatalf("video = %+v", v.Grant)
	}
	if s := got["signal"]; s.Service != "rtm" || s.User != "cam-42" || s.Lifetime() != 3600 {
		t.Fatalf("signal = %+v", s.Grant)
	}
}

func TestHTTPSourceErrors(t *testing.T) {
	srv, calls := tokenService(t, "key-1")
	cfg := &HTTPConfig{URL: srv.URL, Kind: HTTPKindTokenService, bearer: newSecret("wrong"),
		Fetch: []HTTPFetch{{Name: "video", Service: "rtc", Channel: "c", UID: "1", Role: "publisher", Expiry: time.Minute}}}
	h, _ := newHTTPSource(cfg, testLogger(t))
	rep, err := h.Fetch(context.Background(), wire.Request{V: 1, ID: "r-1", Tokens: []string{"video"}})
	if err != nil || rep.Error == nil || rep.Error.Code != wire.CodeForbidden {
		t.Fatalf("wrong bearer: reply %+v err %v, want a forbidden error reply", rep, err)
	}
	if calls.Load() != 1 {
		t.Fatalf("calls = %d", calls.Load())
	}
}

func TestHTTPIssuerSource(t *testing.T) {
	var retry atomic.Bool
	retry.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/tokens" || r.URL.Query().Get("names") != "video" || r.Header.Get("Authorization") != "Bearer k" {
			t.Errorf("unexpected request %s %v", r.URL, r.Header)
		}
		if retry.Swap(false) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		g := mkGrant(t, "video", "cam-42", "7", time.Now().Unix(), 60)
		p, _ := wire.Encode(wire.Reply{V: 1, ID: "server-chosen", Tokens: []wire.Grant{g}})
		_, _ = w.Write(p)
	}))
	defer srv.Close()
	h, _ := newHTTPSource(&HTTPConfig{URL: srv.URL, Kind: HTTPKindIssuer, bearer: newSecret("k")}, testLogger(t))
	req := wire.Request{V: 1, ID: "r-9", Tokens: []string{"video"}}
	rep, err := h.Fetch(context.Background(), req)
	if err != nil || rep.Error == nil || rep.Error.Code != wire.CodeRateLimited || rep.Error.RetryAfter != 7 {
		t.Fatalf("429: reply %+v err %v, want rate_limited retry_after 7", rep, err)
	}
	rep, err = h.Fetch(context.Background(), req)
	if err != nil || rep.ID != "r-9" || len(rep.Tokens) != 1 || checkGrant(&rep.Tokens[0]) != nil {
		t.Fatalf("reply %+v err %v", rep, err)
	}
}
