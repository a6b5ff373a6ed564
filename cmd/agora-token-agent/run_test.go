package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/internal/testlog"
	"agoratokens/sdnotify/sdnotifytest"
	"agoratokens/wire"
)

// TestRunServesOverSocket runs the whole agent against an HTTP issuer and
// reads the token back through its Unix socket, then stops it as SIGTERM
// would (context cancelled) and expects exit 0 and the socket gone.
func TestRunServesOverSocket(t *testing.T) {
	a := startRun(t)
	defer func() {
		a.stop()
		if _, err := os.Stat(a.sock); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	}()
	a.waitReady()
	a.watchToken()
}

// TestRunReloadsOnSIGHUP: systemctl reload sends SIGHUP. A config that
// does not load is refused and the agent goes on; a good one is applied
// (RELOADING=1, then READY=1 again) and the agent serves on.
func TestRunReloadsOnSIGHUP(t *testing.T) {
	a := startRun(t)
	defer a.cancel()
	a.waitReady()

	writeFile(t, a.cfgPath, a.config+"no_such_key: 1\n", 0o644)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	a.logs.WaitFor(t, 10*time.Second, "reload refused")
	if !strings.Contains(a.logs.String(), "no_such_key") {
		t.Fatalf("the refusal does not name the bad key:\n%s", a.logs.String())
	}

	writeFile(t, a.cfgPath, a.config+"log_level: debug\n", 0o644)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	a.waitReady() // after RELOADING=1
	a.logs.WaitFor(t, 10*time.Second, "reloading")
	a.watchToken()
	a.stop()
}

// agentRun is the agent started by run, with its files in a temp dir,
// against a fake HTTP issuer that grants a video token.
type agentRun struct {
	t       *testing.T
	cfgPath string
	config  string // as first written
	sock    string
	notify  *sdnotifytest.Socket
	logs    *testlog.Buffer // run's stderr
	done    chan int        // run's exit code
	cancel  context.CancelFunc
}

// startRun starts the fake issuer, writes the agent's config and API key
// and starts run in the background.
func startRun(t *testing.T) *agentRun {
	t.Helper()
	b := accesstoken.Builder{AppID: "970ca35de60c44645bbae8a215061b33", Certificate: "5cfd2fd1755d40ecb72977518be15d3b"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	a := &agentRun{
		t:       t,
		cfgPath: filepath.Join(dir, "agent.yaml"),
		config: "device_id: cam-1\nhttp: {url: " + srv.URL + ", bearer_token_file: api-key}\ntokens: [video]\n" +
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
	return a
}

// waitReady waits for the agent's READY=1.
func (a *agentRun) waitReady() {
	a.t.Helper()
	if err := a.notify.Wait("READY=1", 10*time.Second); err != nil {
		select {
		case code := <-a.done:
			a.t.Fatalf("run exited %d: %s", code, a.logs.String())
		default:
		}
		a.t.Fatalf("no READY=1 from the agent: %v\n%s", err, a.logs.String())
	}
}

// watchToken watches video on the agent's socket and expects its token.
func (a *agentRun) watchToken() {
	a.t.Helper()
	c, err := net.Dial("unix", a.sock)
	if err != nil {
		a.t.Fatalf("dial the agent's socket after READY=1: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"op":"watch","names":["video"]}` + "\n")); err != nil {
		a.t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			a.t.Fatalf("read: %v\n%s", err, a.logs.String())
		}
		var ev struct{ Event, Name, Token string }
		if err := json.Unmarshal(line, &ev); err != nil {
			a.t.Fatalf("socket said %s: %v", line, err)
		}
		if ev.Event == "watching" {
			continue
		}
		if ev.Event != "token" || ev.Name != "video" || !strings.HasPrefix(ev.Token, "007") {
			a.t.Fatalf("socket said %s, want the video token", line)
		}
		return
	}
}

// stop cancels run as SIGTERM would and expects exit 0.
func (a *agentRun) stop() {
	a.t.Helper()
	a.cancel()
	select {
	case code := <-a.done:
		if code != 0 {
			a.t.Errorf("run exit %d after SIGTERM, want 0\n%s", code, a.logs.String())
		}
	case <-time.After(10 * time.Second):
		a.t.Error("run did not stop")
	}
}
