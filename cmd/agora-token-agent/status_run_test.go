package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/agent/socketproto"
	"agoratokens/internal/testlog"
	"agoratokens/sdnotify/sdnotifytest"
	"agoratokens/wire"
)

// The whole agent, with a state directory it cannot create and a token
// name the issuer refuses (tokens: [video, vidoe]): it starts, serves
// video, and `status` says the tokens are in memory only and vidoe is
// refused, with the issuer's reason.
func TestRunStatusShowsMemoryOnlyAndRefusal(t *testing.T) {
	b := accesstoken.Builder{AppID: "970ca35de60c44645bbae8a215061b33", Certificate: "5cfd2fd1755d40ecb72977518be15d3b"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Query().Get("names"), "vidoe") {
			w.WriteHeader(http.StatusForbidden)
			p, _ := wire.Encode(wire.Reply{V: 1, ID: "x", Error: &wire.ErrorBody{Code: wire.CodeForbidden,
				Message: `device "cam-1" may not hold token "vidoe"`}})
			_, _ = w.Write(p)
			return
		}
		tok, err := b.RTCWithAccount("cam-42", "7", accesstoken.RolePublisher, 600, 600)
		if err != nil {
			t.Error(err)
		}
		now := time.Now().Unix()
		p, _ := wire.Encode(wire.Reply{V: 1, ID: "x", Tokens: []wire.Grant{{Name: "video", Service: "rtc",
			Channel: "cam-42", UID: "7", Token: tok, IssuedAt: now, ExpiresAt: now + 600, TTL: 600, KID: "primary"}}})
		_, _ = w.Write(p)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "api-key"), "k\n", 0o600)
	writeFile(t, filepath.Join(dir, "state"), "a file where the state directory should be", 0o600)
	a := &agentRun{
		t:       t,
		cfgPath: filepath.Join(dir, "agent.yaml"),
		config: "device_id: cam-1\nhttp: {url: " + srv.URL + ", bearer_token_file: api-key}\ntokens: [video, vidoe]\n" +
			"state_dir: state\nsocket: {path: agent.sock}\n",
		sock:   filepath.Join(dir, "agent.sock"),
		notify: sdnotifytest.Listen(t),
		logs:   &testlog.Buffer{},
		done:   make(chan int, 1),
	}
	writeFile(t, a.cfgPath, a.config, 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() { a.done <- run(ctx, []string{"run", "--config", a.cfgPath}, &bytes.Buffer{}, a.logs) }()
	defer a.stop()
	a.waitReady()
	a.watchToken()
	a.logs.WaitFor(t, 10*time.Second, "issuer refuses the token")

	code, out, errs := sockRun(t, runStatus, "--socket", a.sock)
	if code != 0 {
		t.Fatalf("status = %d, %q", code, errs)
	}
	out = squeeze(out)
	for _, want := range []string{"state: memory only", "not a directory",
		`refused: vidoe: forbidden: device "cam-1" may not hold token "vidoe"`, "video valid", "vidoe missing"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = sockRun(t, runStatus, "--json", "--socket", a.sock)
	var m socketproto.Message
	if err := json.Unmarshal([]byte(out), &m); err != nil || code != 0 {
		t.Fatalf("status --json = %d %q: %v", code, out, err)
	}
	if !strings.HasPrefix(m.Storage, "memory only") || len(m.Refused) != 1 || m.Refused[0].Name != "vidoe" || m.Refused[0].Code != "forbidden" {
		t.Fatalf("status --json storage %q refused %+v", m.Storage, m.Refused)
	}
	if n := strings.Count(a.logs.String(), "level=ERROR msg=\"issuer refuses"); n != 1 {
		t.Fatalf("%d Error lines for the refusal, want 1:\n%s", n, a.logs.String())
	}
}
