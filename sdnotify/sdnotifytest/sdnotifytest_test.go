package sdnotifytest

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func send(t *testing.T, msg string) {
	t.Helper()
	c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func TestNextAndWait(t *testing.T) {
	s := Listen(t)
	send(t, "STATUS=starting")
	if got := s.Next(5 * time.Second); got != "STATUS=starting" {
		t.Fatalf("Next = %q", got)
	}
	send(t, "STATUS=up")
	send(t, "MAINPID=7\nREADY=1")
	s.Expect("READY=1", 5*time.Second)

	send(t, "STATUS=still up")
	err := s.Wait("STOPPING=1", 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), `STATUS=still up`) {
		t.Fatalf("Wait for a line never sent: %v, want an error naming what was seen", err)
	}
}
