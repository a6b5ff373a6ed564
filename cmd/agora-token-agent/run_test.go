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
	defer srv.Close()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "api-key"), "k\n", 0o600)
	sock := filepath.Join(dir, "agent.sock")
	cfgPath := filepath.Join(dir, "agent.yaml")
	writeFile(t, cfgPath, "device_id: cam-1\nhttp: {url: "+srv.URL+", bearer_token_file: api-key}\ntokens: [video]\n"+
		"state_dir: state\nsocket: {path: agent.sock}\n", 0o644)

	notify := sdnotifytest.Listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb testlog.Buffer
	go func() { done <- run(ctx, []string{"run", "--config", cfgPath}, &bytes.Buffer{}, &errb) }()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("run exit %d after SIGTERM, want 0\n%s", code, errb.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not stop")
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	}()
	waitReady(t, notify, done, &errb)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial the agent's socket after READY=1: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"op":"watch","names":["video"]}` + "\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("read: %v\n%s", err, errb.String())
		}
		var ev struct{ Event, Name, Token string }
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("socket said %s: %v", line, err)
		}
		if ev.Event == "watching" {
			continue
		}
		if ev.Event != "token" || ev.Name != "video" || !strings.HasPrefix(ev.Token, "007") {
			t.Fatalf("socket said %s, want the video token", line)
		}
		break
	}
}

// TestRunReloadsOnSIGHUP: systemctl reload sends SIGHUP. A config that
// does not load is refused and the agent goes on; a good one is applied
// (RELOADING=1, then READY=1 again) and the agent serves on.
func TestRunReloadsOnSIGHUP(t *testing.T) {
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
	defer srv.Close()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "api-key"), "k\n", 0o600)
	cfgPath := filepath.Join(dir, "agent.yaml")
	good := "device_id: cam-1\nhttp: {url: " + srv.URL + ", bearer_token_file: api-key}\ntokens: [video]\n" +
		"state_dir: state\nsocket: {path: agent.sock}\n"
	writeFile(t, cfgPath, good, 0o644)

	notify := sdnotifytest.Listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var errb testlog.Buffer
	go func() { done <- run(ctx, []string{"run", "--config", cfgPath}, &bytes.Buffer{}, &errb) }()
	waitReady(t, notify, done, &errb)

	writeFile(t, cfgPath, good+"no_such_key: 1\n", 0o644)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	errb.WaitFor(t, 10*time.Second, "reload refused")
	if !strings.Contains(errb.String(), "no_such_key") {
		t.Fatalf("the refusal does not name the bad key:\n%s", errb.String())
	}

	writeFile(t, cfgPath, good+"log_level: debug\n", 0o644)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitReady(t, notify, done, &errb) // after RELOADING=1
	errb.WaitFor(t, 10*time.Second, "reloading")
	c, err := net.Dial("unix", filepath.Join(dir, "agent.sock"))
	if err != nil {
		t.Fatalf("socket after reload: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"op":"watch","names":["video"]}` + "\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("watch after reload: %v", err)
		}
		if strings.Contains(line, `"event":"watching"`) {
			continue
		}
		if !strings.Contains(line, `"event":"token"`) {
			t.Fatalf("watch after reload said %q", line)
		}
		break
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
}

// waitReady waits for the agent's READY=1.
func waitReady(t *testing.T, notify *sdnotifytest.Socket, done <-chan int, errb *testlog.Buffer) {
	t.Helper()
	if err := notify.Wait("READY=1", 10*time.Second); err != nil {
		select {
		case code := <-done:
			t.Fatalf("run exited %d: %s", code, errb.String())
		default:
		}
		t.Fatalf("no READY=1 from the agent: %v\n%s", err, errb.String())
	}
}
