package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// Pseudo-events the watcher records about its own connection.
const (
	evConnected    = "connected"
	evDisconnected = "disconnected"
)

// watchLine is one line a watcher read from the agent's socket (or one
// of its own connection events), with the wall-clock time it was read.
type watchLine struct {
	At   time.Time `json:"-"`
	Seq  int       `json:"-"` // position in the record
	Conn int       `json:"-"` // connection number, from 1
	Raw  string    `json:"-"`

	Event     string `json:"event"`
	Name      string `json:"name"`
	Token     string `json:"token"`
	KID       string `json:"kid"`
	ExpiresAt int64  `json:"expires_at"`
	ExpiresIn int64  `json:"expires_in"`
	Code      string `json:"code"`
	Message   string `json:"message"`
}

// watcher is the media process of one camera, reduced to what the promise
// is about: it watches the agent's socket, reconnects whenever the agent
// goes away (as the Go and C clients do), and records every line with the
// time it arrived. What it holds at any moment is the last token it was
// sent for each name, until the agent says that token expired.
type watcher struct {
	device string
	path   string

	mu      sync.Mutex
	lines   []watchLine
	conns   int
	changed chan struct{} // closed by the next line, made by a waiter

	cancel context.CancelFunc
	done   chan struct{}
}

// startWatcher runs a watcher on the socket at path until the test ends.
func startWatcher(t testing.TB, device, path string) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{device: device, path: path, cancel: cancel, done: make(chan struct{})}
	go w.run(ctx)
	t.Cleanup(w.stop)
	return w
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	wait := 20 * time.Millisecond
	for ctx.Err() == nil {
		if w.session(ctx) {
			wait = 20 * time.Millisecond
		}
		t := time.NewTimer(wait) // a reconnect backoff, not a wait for a condition
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// session is one connection: watch, then record lines until it ends. It
// reports whether the agent answered at all.
func (w *watcher) session(ctx context.Context) bool {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", w.path)
	if err != nil {
		return false
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	w.mu.Lock()
	w.conns++
	n := w.conns
	w.mu.Unlock()
	w.add(watchLine{Event: evConnected, Conn: n})
	if _, err := conn.Write([]byte(`{"op":"watch"}` + "\n")); err != nil {
		w.add(watchLine{Event: evDisconnected, Conn: n, Message: err.Error()})
		return false
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	answered := false
	for {
		raw, err := r.ReadString('\n')
		if err != nil {
			if ctx.Err() == nil {
				w.add(watchLine{Event: evDisconnected, Conn: n, Message: err.Error()})
			}
			return answered
		}
		answered = true
		var l watchLine
		if jerr := json.Unmarshal([]byte(raw), &l); jerr != nil {
			l = watchLine{Event: "unparsable", Message: jerr.Error()}
		}
		l.Conn, l.Raw = n, raw
		w.add(l)
	}
}

func (w *watcher) add(l watchLine) {
	l.At = wallNow()
	w.mu.Lock()
	defer w.mu.Unlock()
	l.Seq = len(w.lines)
	w.lines = append(w.lines, l)
	if w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
}

// record returns every line so far.
func (w *watcher) record() []watchLine {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]watchLine(nil), w.lines...)
}

// mark is a position in the record, for waiting on what comes after it.
func (w *watcher) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// indexAfter is the position just after l, to wait for what follows it.
func (w *watcher) indexAfter(l watchLine) int { return l.Seq + 1 }

// waitLine waits for a line after position from that match accepts, and
// returns it. It fails the test after timeout, or at once if stop is
// closed first (the agent died).
func (w *watcher) waitLine(t testing.TB, from int, timeout time.Duration, stop <-chan struct{}, what string, match func(watchLine) bool) watchLine {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		for i := from; i < len(w.lines); i++ {
			if match(w.lines[i]) {
				l := w.lines[i]
				w.mu.Unlock()
				return l
			}
		}
		from = len(w.lines)
		if w.changed == nil {
			w.changed = make(chan struct{})
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-stop:
			t.Fatalf("%s: waiting for %s: the process under test exited", w.device, what)
		case <-deadline.C:
			t.Fatalf("%s: no %s within %v; last lines:\n%s", w.device, what, timeout, w.lastLines(8))
		}
	}
}

// waitToken waits for a token event for name after position from.
func (w *watcher) waitToken(t testing.TB, from int, name string, timeout time.Duration) watchLine {
	t.Helper()
	return w.waitLine(t, from, timeout, nil, "token event for "+name, func(l watchLine) bool {
		return l.Event == "token" && l.Name == name
	})
}

// waitEvent waits for an event of kind for name after position from.
func (w *watcher) waitEvent(t testing.TB, from int, kind, name string, timeout time.Duration) watchLine {
	t.Helper()
	return w.waitLine(t, from, timeout, nil, kind+" event for "+name, func(l watchLine) bool {
		return l.Event == kind && l.Name == name
	})
}

// lastLines renders the last n lines without tokens, for failure reports.
func (w *watcher) lastLines(n int) string {
	rec := w.record()
	if len(rec) > n {
		rec = rec[len(rec)-n:]
	}
	var s string
	for _, l := range rec {
		s += "  " + l.String() + "\n"
	}
	return s
}

// String describes a line without its token (a secret).
func (l watchLine) String() string {
	s := fmt.Sprintf("%s conn %d %s", l.At.Format("15:04:05.000"), l.Conn, l.Event)
	if l.Name != "" {
		s += " " + l.Name
	}
	if l.ExpiresAt != 0 {
		s += fmt.Sprintf(" expires_at=%d (in %.1fs)", l.ExpiresAt, time.Unix(l.ExpiresAt, 0).Sub(l.At).Seconds())
	}
	if l.Code != "" {
		s += " code=" + l.Code
	}
	if l.Message != "" {
		s += " (" + l.Message + ")"
	}
	return s
}
