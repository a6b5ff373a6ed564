// Package logthrottle rate-limits log lines that a peer can trigger over
// and over (a device's malformed request, a refused login, a flood of
// requests): each message is logged a few times per window, the rest are
// counted, and the first line logged after a quiet spell says how many
// were suppressed, e.g. "invalid request (118 more suppressed in the
// last 10s)". Without it one misbehaving device writes the journal full.
package logthrottle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"agoratokens/clock"
)

// Defaults: at most DefaultBurst lines of one message per DefaultWindow.
const (
	DefaultWindow = 10 * time.Second
	DefaultBurst  = 5
)

// maxKeys bounds the keys tracked. Keys are meant to be constant messages
// from the code, so the bound is only a guard: past it, new keys share
// one slot.
const maxKeys = 4096

// overflowKey is the slot every key beyond maxKeys shares.
const overflowKey = "\x00overflow"

// Gate decides, per key, whether an event may be logged. It is safe for
// concurrent use.
type Gate struct {
	clk    clock.Clock
	window time.Duration
	burst  int

	mu   sync.Mutex
	keys map[string]*window
}

type window struct {
	start      time.Time
	n          int // events let through in this window
	suppressed int // events held back in this window
}

// NewGate returns a gate letting burst events of each key through per
// window (defaults for zero values), timed by clk (nil: the real clock).
func NewGate(clk clock.Clock, every time.Duration, burst int) *Gate {
	if clk == nil {
		clk = clock.Real()
	}
	if every <= 0 {
		every = DefaultWindow
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	return &Gate{clk: clk, window: every, burst: burst, keys: map[string]*window{}}
}

// Window is the gate's window, for the "in the last …" of a message.
func (g *Gate) Window() time.Duration { return g.window }

// Allow reports whether an event of key may be logged now and, if so,
// how many events of key were suppressed in the window before.
func (g *Gate) Allow(key string) (ok bool, suppressed int) {
	now := g.clk.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	w, found := g.keys[key]
	if !found {
		if len(g.keys) >= maxKeys {
			key = overflowKey
			w = g.keys[key]
		}
		if w == nil {
			w = &window{start: now}
			g.keys[key] = w
		}
	}
	carried := 0
	if now.Sub(w.start) >= g.window {
		carried = w.suppressed
		*w = window{start: now}
	}
	if w.n >= g.burst {
		w.suppressed++
		return false, 0
	}
	w.n++
	return true, carried
}

// Suffix is what a message logged after suppressed events carries.
func (g *Gate) Suffix(suppressed int) string {
	if suppressed == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d more suppressed in the last %v)", suppressed, g.window)
}

// Logger logs through a Gate keyed by message: use it with constant
// messages wherever a peer can trigger the line.
type Logger struct {
	log  *slog.Logger
	gate *Gate
}

// New returns a throttled logger writing to log (see NewGate for the
// other arguments).
func New(log *slog.Logger, clk clock.Clock, every time.Duration, burst int) *Logger {
	return &Logger{log: log, gate: NewGate(clk, every, burst)}
}

// Log logs msg at level unless too many lines of msg went out in the
// current window. A line at a disabled level costs nothing and counts
// nothing.
func (l *Logger) Log(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	ok, n := l.gate.Allow(msg)
	if !ok {
		return
	}
	l.log.Log(ctx, level, msg+l.gate.Suffix(n), args...)
}

// Warn logs at warn level, throttled.
func (l *Logger) Warn(msg string, args ...any) { l.Log(slog.LevelWarn, msg, args...) }

// Info logs at info level, throttled.
func (l *Logger) Info(msg string, args ...any) { l.Log(slog.LevelInfo, msg, args...) }

// Error logs at error level, throttled.
func (l *Logger) Error(msg string, args ...any) { l.Log(slog.LevelError, msg, args...) }
