package sdnotify

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"agoratokens/sdnotify/sdnotifytest"
)

// expectMsg checks that the next notification is exactly want.
func expectMsg(t *testing.T, sock *sdnotifytest.Socket, want string) {
	t.Helper()
	if got := sock.Next(5 * time.Second); got != want {
		t.Fatalf("systemd got %q, want %q", got, want)
	}
}

func TestNotifications(t *testing.T) {
	sock := sdnotifytest.Listen(t)
	t.Setenv("WATCHDOG_USEC", "3000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := New(nil)

	if d, ok := n.WatchdogInterval(); !ok || d != 3*time.Second {
		t.Errorf("WatchdogInterval = %v, %v; want 3s, true", d, ok)
	}
	if got := n.PingEvery(); got != 1500*time.Millisecond {
		t.Errorf("PingEvery = %v, want 1.5s", got)
	}
	if err := n.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	expectMsg(t, sock, "READY=1")

	n.Status("broker connected;\nvideo valid 58m12s")
	expectMsg(t, sock, "STATUS=broker connected; video valid 58m12s")
	n.Status("broker connected; video valid 58m12s") // same: not sent again
	n.Ping()
	expectMsg(t, sock, "WATCHDOG=1")

	n.Reloading()
	expectMsg(t, sock, "RELOADING=1")
	n.Stopping()
	expectMsg(t, sock, "STOPPING=1")
}

func TestWatchdogForAnotherProcess(t *testing.T) {
	sock := sdnotifytest.Listen(t)
	t.Setenv("WATCHDOG_USEC", "3000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	n := New(nil)
	if d, ok := n.WatchdogInterval(); ok || n.PingEvery() != 0 {
		t.Fatalf("watchdog meant for pid %d enabled here: %v", os.Getpid()+1, d)
	}
	n.Ping() // not sent: no watchdog for us
	n.Stopping()
	expectMsg(t, sock, "STOPPING=1")
}

func TestBadWatchdogUsec(t *testing.T) {
	sdnotifytest.Listen(t)
	t.Setenv("WATCHDOG_USEC", "soon")
	var logs bytes.Buffer
	n := New(slog.New(slog.NewTextHandler(&logs, nil)))
	if _, ok := n.WatchdogInterval(); ok {
		t.Fatal("watchdog enabled by a malformed WATCHDOG_USEC")
	}
	if !strings.Contains(logs.String(), "WATCHDOG_USEC") {
		t.Errorf("log %q does not name WATCHDOG_USEC", logs.String())
	}
}

func TestOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	var logs bytes.Buffer
	n := New(slog.New(slog.NewTextHandler(&logs, nil)))
	if err := n.Ready(); err != nil {
		t.Fatalf("Ready outside systemd: %v", err)
	}
	n.Status("x")
	n.Ping()
	n.Stopping()
	if _, ok := n.WatchdogInterval(); ok {
		t.Error("watchdog enabled outside systemd")
	}
	if logs.Len() != 0 {
		t.Errorf("logged outside systemd: %s", logs.String())
	}
}

func TestSocketGone(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone.sock"))
	t.Setenv("WATCHDOG_USEC", "")
	var logs bytes.Buffer
	n := New(slog.New(slog.NewTextHandler(&logs, nil)))
	if err := n.Ready(); err == nil || !strings.Contains(err.Error(), "notify systemd ready") {
		t.Fatalf("Ready to a missing socket: %v, want an error", err)
	}
	n.Status("one")
	n.Status("two")
	n.Stopping()
	if c := strings.Count(logs.String(), "notify systemd failed"); c != 1 {
		t.Errorf("%d failure log lines for 3 failed notifications, want 1:\n%s", c, logs.String())
	}
}

func TestStatusLine(t *testing.T) {
	tests := []struct {
		name   string
		broker string
		tokens []Token
		want   string
	}{
		{"none", "connecting", nil, "broker connecting; no tokens"},
		{"mixed", "connected", []Token{
			{Name: "video", State: "valid", ExpiresIn: 58*time.Minute + 12*time.Second + 400*time.Millisecond},
			{Name: "signal", State: "renewing", ExpiresIn: 25 * time.Second},
			{Name: "chat", State: "expired", ExpiresIn: -3 * time.Second},
			{Name: "edu", State: "missing"},
		}, "broker connected; video valid 58m12s, signal renewing 25s, chat expired, edu missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StatusLine(tt.broker, tt.tokens); got != tt.want {
				t.Errorf("StatusLine = %q\nwant          %q", got, tt.want)
			}
		})
	}
}
