// Package sdnotifytest stands in for systemd's notify socket in tests: a
// real unixgram socket in a temp dir, named by NOTIFY_SOCKET for the
// test's duration, that the test reads notifications from.
package sdnotifytest

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Socket is the listening end of NOTIFY_SOCKET.
type Socket struct {
	t    testing.TB
	conn *net.UnixConn
}

// Listen opens the socket and sets NOTIFY_SOCKET to it until the test
// ends. Like every t.Setenv, it cannot be used in parallel tests.
func Listen(t testing.TB) *Socket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return &Socket{t: t, conn: conn}
}

// Next returns the next notification as sent (one datagram), failing the
// test if none comes within timeout.
func (s *Socket) Next(timeout time.Duration) string {
	s.t.Helper()
	msg, err := s.read(timeout)
	if err != nil {
		s.t.Fatalf("no notification within %v: %v", timeout, err)
	}
	return msg
}

// Wait reads notifications until one has the line want (such as
// READY=1; a datagram may carry several lines), or returns an error
// naming the lines seen once timeout has passed.
func (s *Socket) Wait(want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var seen []string
	for {
		msg, err := s.read(time.Until(deadline))
		if err != nil {
			return fmt.Errorf("no %s on NOTIFY_SOCKET (saw %q): %w", want, seen, err)
		}
		for _, l := range strings.Split(msg, "\n") {
			if l == want {
				return nil
			}
			seen = append(seen, l)
		}
	}
}

// Expect is Wait that fails the test on error.
func (s *Socket) Expect(want string, timeout time.Duration) {
	s.t.Helper()
	if err := s.Wait(want, timeout); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Socket) read(timeout time.Duration) (string, error) {
	if err := s.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	buf := make([]byte, 4096)
	n, err := s.conn.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
