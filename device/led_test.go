package device

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/clock"
	"agoratokens/internal/testlog"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// fakeClock is the clock package's fake, moved by the test: the LED's
// timers fire only when the test says so.
type fakeClock struct{ *clock.Fake }

func newFakeClock() *fakeClock { return &fakeClock{clock.NewFake(time.Unix(1_700_000_000, 0))} }

// take waits for Run's next timer and checks its duration. Run arms a
// timer only after it wrote the LED, so once take returns the write for
// this step is done.
func (c *fakeClock) take(t *testing.T, want time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitTimers(ctx, 1); err != nil {
		t.Fatalf("no timer for %v within 5s", want)
	}
	if p := c.Pending(); len(p) != 1 || p[0] != want {
		t.Fatalf("timers armed for %v, want one for %v", p, want)
	}
}

// expire waits for Run's next timer and fires it.
func (c *fakeClock) expire(t *testing.T, want time.Duration) {
	t.Helper()
	c.take(t, want)
	c.Advance(want)
}

// recPin is periph's test pin that also reports each write.
type recPin struct {
	*gpiotest.Pin
	outs chan gpio.Level
}

func (p *recPin) Out(l gpio.Level) error {
	err := p.Pin.Out(l)
	p.outs <- l
	return err
}

func (p *recPin) expect(t *testing.T, want gpio.Level) {
	t.Helper()
	select {
	case got := <-p.outs:
		if got != want {
			t.Fatalf("pin set to %v, want %v", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("pin not set to %v within 5s", want)
	}
}

// startLED runs l until the test ends and returns a function that stops
// it and waits for Run to return.
func startLED(t *testing.T, l *LED) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return within 5s of cancel")
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return stop
}

func TestPatternsAreDistinct(t *testing.T) {
	seen := map[string]LEDState{}
	for s := LEDOff; s <= LEDExpired; s++ {
		p := PatternFor(s)
		if len(p.Steps)%2 != 0 {
			t.Errorf("%v: %d steps, want on/off pairs", s, len(p.Steps))
		}
		for _, d := range p.Steps {
			if d < 50*time.Millisecond {
				t.Errorf("%v: step of %v is too short to see", s, d)
			}
		}
		key := fmt.Sprint(p.On, p.Steps)
		if other, ok := seen[key]; ok {
			t.Errorf("%v and %v share the pattern %s", s, other, key)
		}
		seen[key] = s
	}
}

func TestStateFor(t *testing.T) {
	tests := []struct {
		expired, failing, renewing bool
		want                       LEDState
	}{
		{false, false, false, LEDOK},
		{false, false, true, LEDRenewing},
		{false, true, true, LEDFailing},
		{true, true, true, LEDExpired},
		{true, false, false, LEDExpired},
	}
	for _, tt := range tests {
		if got := StateFor(tt.expired, tt.failing, tt.renewing); got != tt.want {
			t.Errorf("StateFor(expired=%v, failing=%v, renewing=%v) = %v, want %v",
				tt.expired, tt.failing, tt.renewing, got, tt.want)
		}
	}
}

func TestGPIOLEDPatterns(t *testing.T) {
	for _, activeLow := range []bool{false, true} {
		t.Run(map[bool]string{false: "active high", true: "active low"}[activeLow], func(t *testing.T) {
			on, off := gpio.High, gpio.Low
			if activeLow {
				on, off = off, on
			}
			pin := &recPin{Pin: &gpiotest.Pin{N: "GPIO17", Num: 17}, outs: make(chan gpio.Level, 16)}
			clk := newFakeClock()
			l, err := NewLED(LEDConfig{Pin: pin, ActiveLow: activeLow}, clk, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !l.Enabled() {
				t.Fatal("LED with a pin is not enabled")
			}
			stop := startLED(t, l)
			pin.expect(t, off) // starts Off

			l.Set(LEDOK)
			pin.expect(t, on)

			l.Set(LEDRenewing)
			pin.expect(t, on)
			clk.expire(t, 500*time.Millisecond)
			pin.expect(t, off)
			clk.expire(t, 500*time.Millisecond)
			pin.expect(t, on)
			clk.take(t, 500*time.Millisecond) // cut short by the next Set

			l.Set(LEDFailing)
			pin.expect(t, on)
			clk.expire(t, 100*time.Millisecond)
			pin.expect(t, off)
			clk.expire(t, 200*time.Millisecond)
			pin.expect(t, on)
			clk.expire(t, 100*time.Millisecond)
			pin.expect(t, off)
			clk.expire(t, 1600*time.Millisecond)
			pin.expect(t, on)
			clk.take(t, 100*time.Millisecond)

			l.Set(LEDExpired)
			pin.expect(t, on)
			clk.expire(t, 100*time.Millisecond)
			pin.expect(t, off)

			if got := l.State(); got != LEDExpired {
				t.Errorf("State = %v, want expired", got)
			}
			stop()
			pin.expect(t, off) // Run turns the LED off when it ends
			pin.Lock()
			defer pin.Unlock()
			if pin.L != off {
				t.Errorf("pin left at %v", pin.L)
			}
		})
	}
}

func TestSysfsLED(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	write("brightness", "0\n")
	write("max_brightness", "255\n")
	write("trigger", "none rc-feedback [mmc0] timer heartbeat\n")

	clk := newFakeClock()
	l, err := NewLED(LEDConfig{Sysfs: dir}, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := read("trigger"); got != "none" {
		t.Errorf("trigger = %q after NewLED, want none", got)
	}
	stop := startLED(t, l)
	l.Set(LEDRenewing)
	clk.take(t, 500*time.Millisecond)
	if got := read("brightness"); got != "255" {
		t.Errorf("brightness = %q in the on phase, want max_brightness 255", got)
	}
	clk.Advance(500 * time.Millisecond)
	clk.take(t, 500*time.Millisecond)
	if got := read("brightness"); got != "0" {
		t.Errorf("brightness = %q in the off phase, want 0", got)
	}
	clk.Advance(500 * time.Millisecond)
	clk.take(t, 500*time.Millisecond)
	if got := read("brightness"); got != "255" {
		t.Errorf("brightness = %q in the second on phase, want 255", got)
	}
	stop()
	if got := read("brightness"); got != "0" {
		t.Errorf("brightness = %q after Run, want 0", got)
	}
	if got := read("trigger"); got != "mmc0" {
		t.Errorf("trigger = %q after Run, want the old trigger mmc0", got)
	}
}

func TestAbsentLEDIsANoOp(t *testing.T) {
	tests := []struct {
		name    string
		cfg     LEDConfig
		wantLog string
	}{
		{"none configured", LEDConfig{}, "no led configured"},
		{"missing sysfs led", LEDConfig{Sysfs: "/nonexistent/leds/status"}, "no such kernel led"},
		{"missing gpio", LEDConfig{GPIO: "GPIO_NOT_ON_THIS_BOARD"}, "gpio"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			l, err := NewLED(tt.cfg, newFakeClock(), slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatalf("NewLED: %v", err)
			}
			if l.Enabled() {
				t.Fatal("absent LED reports enabled")
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log %q does not say %q", logs.String(), tt.wantLog)
			}
			stop := startLED(t, l)
			l.Set(LEDFailing)
			if l.State() != LEDFailing {
				t.Errorf("State = %v after Set(failing)", l.State())
			}
			stop()
		})
	}
}

func TestLEDConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     LEDConfig
		wantErr string
	}{
		{"both", LEDConfig{GPIO: "GPIO17", Sysfs: "/sys/class/leds/ACT"}, "not both"},
		{"relative sysfs", LEDConfig{Sysfs: "leds/ACT"}, "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewLED(tt.cfg, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewLED error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// A write that fails is logged once, not on every blink, and Run goes on.
func TestFailingWritesLoggedOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "brightness"), []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	var logs testlog.Buffer
	l, err := NewLED(LEDConfig{Sysfs: dir}, clk, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// Replace the file by a directory: every write now fails.
	if err := os.Remove(filepath.Join(dir, "brightness")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "brightness"), 0o755); err != nil {
		t.Fatal(err)
	}
	startLED(t, l)
	l.Set(LEDExpired)
	for i := 0; i < 6; i++ {
		clk.expire(t, 100*time.Millisecond)
	}
	clk.take(t, 100*time.Millisecond) // Run wrote again before arming this one
	if n := strings.Count(logs.String(), "set status LED failed"); n != 1 {
		t.Errorf("%d failure log lines, want 1:\n%s", n, logs.String())
	}
}
