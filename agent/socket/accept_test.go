package socket_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"syscall"
	"testing"

	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
)

// TestAcceptOutOfDescriptors: a process out of descriptors (a flood of
// clients, or a low RLIMIT_NOFILE) cannot accept a waiting connection.
// The server waits, on its clock, and accepts it once descriptors are
// free again, instead of stopping, which would stop the agent.
func TestAcceptOutOfDescriptors(t *testing.T) {
	logs := newLogCounter()
	f := sockettest.NewFixture(t, socket.Config{Logger: slog.New(logs)})
	f.Set("video", "007v0")

	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := orig
	low.Cur = uint64(len(fds) + 4)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	}
	t.Cleanup(restore)
	// Use up every descriptor, then free one for the client's socket:
	// the server has none left to accept the connection with.
	var fill []*os.File
	closeAll := func() {
		for _, f := range fill {
			f.Close()
		}
		fill = nil
	}
	t.Cleanup(closeAll)
	for {
		nf, err := os.Open(os.DevNull)
		if errors.Is(err, syscall.EMFILE) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if fill = append(fill, nf); len(fill) > 64 {
			t.Fatal("opened 64 files past a lowered RLIMIT_NOFILE")
		}
	}
	fill[len(fill)-1].Close()
	fill = fill[:len(fill)-1]
	c := dial(t, f.Srv.Path())
	logs.wait(t, logAcceptFailed, 1)

	closeAll()
	restore()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := f.Clock.WaitTimers(ctx, 1); err != nil {
		t.Fatalf("the server armed no timer to accept again: %v", err)
	}
	f.Clock.Advance(f.Clock.Pending()[0])
	c.send(`{"op":"get","name":"video"}`)
	if m := c.expect("token"); m.Token != "007v0" {
		t.Fatalf("after descriptors freed up: %+v", m)
	}
	logs.wait(t, logAcceptAgain, 1)
}
