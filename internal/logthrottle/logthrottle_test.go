package logthrottle

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"agoratokens/clock"
	"agoratokens/internal/testlog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLoggerThrottlesAndCountsSuppressed(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	var buf testlog.Buffer
	l := New(buf.Logger(), clk, 10*time.Second, 3)
	for range 100 {
		l.Warn("invalid request", "device", "cam-1")
		l.Info("other message")
	}
	if n := strings.Count(buf.String(), "msg=\"invalid request\""); n != 3 {
		t.Fatalf("%d lines of a repeated message in one window, want 3:\n%s", n, buf.String())
	}
	if n := strings.Count(buf.String(), "other message"); n != 3 {
		t.Fatalf("another message shares the budget: %d lines", n)
	}
	clk.Advance(10 * time.Second)
	l.Warn("invalid request", "device", "cam-1")
	if !strings.Contains(buf.String(), `msg="invalid request (97 more suppressed in the last 10s)" device=cam-1`) {
		t.Fatalf("the first line of the next window does not count the suppressed ones:\n%s", buf.String())
	}
	l.Warn("invalid request")
	if strings.Count(buf.String(), "suppressed") != 1 {
		t.Fatalf("the count is repeated:\n%s", buf.String())
	}
}

func TestGateBoundsKeys(t *testing.T) {
	g := NewGate(clock.NewFake(time.Unix(0, 0)), time.Second, 1)
	for i := range 3 * maxKeys {
		g.Allow(strings.Repeat("k", i%50) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if len(g.keys) > maxKeys+1 {
		t.Fatalf("%d keys tracked, bound %d", len(g.keys), maxKeys)
	}
}

func TestDisabledLevelCountsNothing(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	var buf testlog.Buffer
	l := New(buf.Logger(), clk, time.Second, 1)
	l.Log(-8, "below debug") // disabled
	l.Warn("below debug")
	if !strings.Contains(buf.String(), `msg="below debug"`) || strings.Contains(buf.String(), "suppressed") {
		t.Fatalf("%s", buf.String())
	}
}
