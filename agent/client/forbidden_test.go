package client_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"agoratokens/agent/client"
	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
	"agoratokens/internal/testlog"
)

// watchHelperEnv makes the test binary watch the socket it names and
// print one line per event (see TestMain).
const watchHelperEnv = "AGORA_CLIENT_TEST_WATCH"

// watchHelper watches path and prints each event's kind (and error); it
// exits 0 when the watch ends by itself, 1 if it cannot start.
func watchHelper(path string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.Dial(path)
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	defer c.Close()
	events, err := c.Watch(ctx)
	if err != nil {
		fmt.Println("watch:", err)
		return 1
	}
	for ev := range events {
		fmt.Println(ev.Kind, ev.Err)
	}
	if ctx.Err() != nil {
		fmt.Println("watch still running after a minute")
		return 1
	}
	return 0
}

// TestWatchEndsWhenForbidden: the agent comes back from a restart with a
// config that no longer allows this process. Knocking again cannot help
// until the config changes, so the watch reports the refusal and ends
// (its channel closes) instead of reconnecting forever in silence.
func TestWatchEndsWhenForbidden(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs a client as uid 65534 and must run as root (make test does)")
	}
	// Not t.TempDir: uid 65534 must reach the binary and the socket.
	dir, err := os.MkdirTemp("", "client-forbidden-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "client")
	copySelf(t, helper)
	path := filepath.Join(dir, "agent.sock")

	allowed := sockettest.NewFixture(t, socket.Config{Path: path, Mode: 0o666, AllowUIDs: []int{65534}})
	allowed.Set("video", "007v0")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, helper)
	// GORACE: a race-enabled binary otherwise idles 1 s at exit.
	cmd.Env = append(os.Environ(), watchHelperEnv+"="+path, "GORACE=atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testlog.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	expect := func(prefix string) string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("helper output ended (%v); want %q\nstderr:\n%s", lines.Err(), prefix, stderr)
		}
		if !strings.HasPrefix(lines.Text(), prefix) {
			t.Fatalf("helper printed %q, want %q", lines.Text(), prefix)
		}
		return lines.Text()
	}
	expect("watching")
	expect("token")

	if err := allowed.Stop(); err != nil {
		t.Fatal(err)
	}
	expect("disconnected")
	logs := &testlog.Buffer{}
	sockettest.Serve(t, socket.Config{Path: path, Mode: 0o666, Logger: logs.Logger()}, sockettest.NewSource("cam-42", nil))
	if line := expect("disconnected"); !strings.Contains(line, "forbidden") {
		t.Fatalf("after the refused reconnect the helper printed %q, want the forbidden error", line)
	}
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("helper exited %d, want 0 (the watch ended by itself); it printed %q", exit.ExitCode(), rest)
		}
		t.Fatal(err)
	}
	if len(rest) > 0 {
		t.Errorf("helper printed %q after the refusal", rest)
	}
	if n := strings.Count(logs.String(), "socket client refused"); n != 1 {
		t.Errorf("the agent refused %d connections, want 1 (no retry):\n%s", n, logs)
	}
}

// copySelf copies the running test binary to path, executable by all.
func copySelf(t *testing.T, path string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
