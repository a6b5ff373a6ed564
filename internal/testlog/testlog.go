// Package testlog gives tests a log destination that the code under test
// may write to from any goroutine, and a way to wait for a line to appear
// without polling: a waiter wakes on each write.
package testlog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer collects what is written to it; it is safe for concurrent use.
// The zero value is ready to use.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed by the next write, made by a waiter
}

// Write implements io.Writer and wakes the waiters.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Logger returns a debug-level text logger writing into b.
func (b *Buffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// snapshot returns the text so far and a channel the next write closes.
func (b *Buffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.b.String(), b.changed
}

// Wait waits until cond holds for the text written so far, reporting
// false if timeout passes first. cond is checked again after each write.
func (b *Buffer) Wait(timeout time.Duration, cond func(text string) bool) bool {
	return wait[struct{}](b, timeout, nil, "", cond) == nil
}

// WaitFor fails the test unless the text comes to contain one of subs
// within timeout.
func (b *Buffer) WaitFor(t testing.TB, timeout time.Duration, subs ...string) {
	t.Helper()
	if err := wait[struct{}](b, timeout, nil, fmt.Sprintf("%q", subs), containsAny(subs)); err != nil {
		t.Fatalf("%v", err)
	}
}

// WaitForUnless is WaitFor that also fails the test as soon as a value
// arrives on stop (the process under test exited, an event came that
// should not have), naming that value.
func WaitForUnless[T any](t testing.TB, b *Buffer, timeout time.Duration, stop <-chan T, subs ...string) {
	t.Helper()
	if err := wait(b, timeout, stop, fmt.Sprintf("%q", subs), containsAny(subs)); err != nil {
		t.Fatalf("%v", err)
	}
}

func containsAny(subs []string) func(string) bool {
	return func(text string) bool {
		for _, s := range subs {
			if strings.Contains(text, s) {
				return true
			}
		}
		return false
	}
}

// wait waits until cond holds, a value arrives on stop, or timeout
// passes; only the first returns nil. what names the wait in errors.
func wait[T any](b *Buffer, timeout time.Duration, stop <-chan T, what string, cond func(string) bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		text, changed := b.snapshot()
		if cond(text) {
			return nil
		}
		select {
		case <-changed:
		case v := <-stop:
			return fmt.Errorf("got %+v while waiting for %s in the log:\n%s", v, what, b.String())
		case <-timer.C:
			return fmt.Errorf("no %s in the log within %v:\n%s", what, timeout, b.String())
		}
	}
}
