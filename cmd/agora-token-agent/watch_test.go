package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socketproto"
)

func TestWatchCmd(t *testing.T) {
	src, path := sockServe(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := runWatch(ctx, []string{"video", "--socket", path}, pw, io.Discard)
		pw.Close()
		done <- code
	}()
	lines := bufio.NewScanner(pr)
	next := func() socketproto.Message {
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

	if m := next(); m.Event != "token" || m.Token != "007video" || m.Name != "video" || m.ExpiresIn == nil || *m.ExpiresIn != 3600 {
		t.Fatalf("first line %+v", m)
	}
	src.Issue("signal", "007signal", time.Hour) // not watched
	src.Issue("video", "007video2", time.Hour)
	src.Emit(agent.EventWillExpire, "video")
	if m := next(); m.Event != "token" || m.Token != "007video2" {
		t.Fatalf("second line %+v", m)
	}
	if m := next(); m.Event != "will_expire" || m.Name != "video" || m.Token != "" {
		t.Fatalf("third line %+v", m)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("watch exited %d after interrupt", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop after interrupt")
	}
}

func TestWatchCmdUnknownName(t *testing.T) {
	_, path := sockServe(t, "")
	code, _, errs := sockRun(t, runWatch, "nope", "--socket", path)
	if code != 1 || errs == "" {
		t.Fatalf("watch nope = %d, %q", code, errs)
	}
}
