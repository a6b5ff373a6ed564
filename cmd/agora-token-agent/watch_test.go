package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
	"agoratokens/agent/socketproto"
)

// watchCmd runs the watch command with args until the test ends and
// returns a reader of its output lines, and a function that interrupts
// it and checks that it exits 0.
func watchCmd(t *testing.T, args ...string) (next func() socketproto.Message, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := runWatch(ctx, args, pw, io.Discard)
		pw.Close()
		done <- code
	}()
	lines := bufio.NewScanner(pr)
	next = func() socketproto.Message {
		t.Helper()
		got := make(chan bool, 1)
		go func() { got <- lines.Scan() }()
		select {
		case ok := <-got:
			if !ok {
				t.Fatalf("watch output ended: %v", lines.Err())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no watch output within 10s")
		}
		var m socketproto.Message
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("watch printed %q: %v", lines.Text(), err)
		}
		return m
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			go io.Copy(io.Discard, pr)
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("watch exited %d after interrupt", code)
				}
			case <-time.After(10 * time.Second):
				t.Error("watch did not stop after interrupt")
			}
		})
	}
	t.Cleanup(stop)
	return next, stop
}

func TestWatchCmd(t *testing.T) {
	src, path := sockServe(t, "")
	next, stop := watchCmd(t, "video", "--socket", path)

	// As the protocol does: watching first, then the current token.
	if m := next(); m.Event != "watching" || !slices.Equal(m.Names, []string{"video"}) {
		t.Fatalf("first line %+v, want watching [video]", m)
	}
	if m := next(); m.Event != "token" || m.Token != "007video" || m.Name != "video" || m.ExpiresIn == nil || *m.ExpiresIn != 3600 {
		t.Fatalf("second line %+v", m)
	}
	src.Issue("signal", "007signal", time.Hour) // not watched
	src.Issue("video", "007video2", time.Hour)
	src.Emit(agent.EventWillExpire, "video")
	if m := next(); m.Event != "token" || m.Token != "007video2" {
		t.Fatalf("third line %+v", m)
	}
	if m := next(); m.Event != "will_expire" || m.Name != "video" || m.Token != "" {
		t.Fatalf("fourth line %+v", m)
	}
	stop()
}

// TestWatchCmdReconnects: the agent restarts; watch says it lost the
// agent, then watching again once it is back, then the current token.
func TestWatchCmdReconnects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	a := sockettest.NewFixture(t, socket.Config{Path: path})
	next, _ := watchCmd(t, "--socket", path)
	if m := next(); m.Event != "watching" || m.Names != nil {
		t.Fatalf("first line %+v, want watching (all names)", m)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if m := next(); m.Event != "disconnected" || m.Message == "" {
		t.Fatalf("after the agent stopped: %+v, want disconnected", m)
	}
	b := sockettest.NewFixture(t, socket.Config{Path: path})
	b.Set("video", "007video")
	if m := next(); m.Event != "watching" {
		t.Fatalf("after the agent came back: %+v, want watching", m)
	}
	if m := next(); m.Event != "token" || m.Token != "007video" {
		t.Fatalf("after watching again: %+v, want the current token", m)
	}
}

func TestWatchCmdUnknownName(t *testing.T) {
	_, path := sockServe(t, "")
	code, _, errs := sockRun(t, runWatch, "nope", "--socket", path)
	if code != 1 || errs == "" {
		t.Fatalf("watch nope = %d, %q", code, errs)
	}
}
