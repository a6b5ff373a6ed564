package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"agoratokens/clock"
)

// LEDState is what the status LED shows. Each state has its own pattern,
// readable from across a room: see Pattern.
type LEDState int

// LED states, from the agent's point of view.
const (
	// LEDOff: the agent is not running (or is stopping).
	LEDOff LEDState = iota
	// LEDOK: every token is valid: steady on.
	LEDOK
	// LEDRenewing: a renewal is under way, tokens still valid: slow blink.
	LEDRenewing
	// LEDFailing: renewals keep failing, tokens still valid: double flash.
	LEDFailing
	// LEDExpired: a token has expired (or never arrived): fast blink.
	LEDExpired
)

var ledStateNames = [...]string{"off", "ok", "renewing", "failing", "expired"}

// String names the state for logs.
func (s LEDState) String() string {
	if s < 0 || int(s) >= len(ledStateNames) {
		return fmt.Sprintf("LEDState(%d)", int(s))
	}
	return ledStateNames[s]
}

// StateFor picks the LED state from the agent's situation; the worst
// condition wins: an expired or missing token, then failing renewals,
// then a renewal in progress.
func StateFor(expired, failing, renewing bool) LEDState {
	switch {
	case expired:
		return LEDExpired
	case failing:
		return LEDFailing
	case renewing:
		return LEDRenewing
	}
	return LEDOK
}

// Pattern is a blink pattern: On is the level of a steady LED when Steps
// is empty; otherwise the LED is on for Steps[0], off for Steps[1], on
// for Steps[2], … and starts over.
type Pattern struct {
	On    bool
	Steps []time.Duration
}

// PatternFor returns the blink pattern of a state.
func PatternFor(s LEDState) Pattern {
	const ms = time.Millisecond
	switch s {
	case LEDOK:
		return Pattern{On: true}
	case LEDRenewing:
		return Pattern{Steps: []time.Duration{500 * ms, 500 * ms}}
	case LEDFailing:
		return Pattern{Steps: []time.Duration{100 * ms, 200 * ms, 100 * ms, 1600 * ms}}
	case LEDExpired:
		return Pattern{Steps: []time.Duration{100 * ms, 100 * ms}}
	}
	return Pattern{}
}

// ledSink drives one physical LED.
type ledSink interface {
	set(on bool) error
	close() error
	String() string
}

// LED shows an LEDState on a status LED. Set may be called from any
// goroutine; Run drives the pattern. An LED without hardware (none
// configured, or the configured one absent) accepts Set and does nothing.
type LED struct {
	sink   ledSink     // nil: no LED
	clock  clock.Clock // the blink patterns' time source
	log    *slog.Logger
	change chan struct{}

	mu    sync.Mutex
	state LEDState
}

// NewLED opens the LED that cfg names. A configuration that names no LED,
// or one this board does not have, gives an LED that does nothing (and a
// log line); only a configuration that cannot be right is an error. A nil
// clock is the real clock; a nil logger discards.
func NewLED(cfg LEDConfig, clk clock.Clock, logger *slog.Logger) (*LED, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if clk == nil {
		clk = clock.Real()
	}
	l := &LED{clock: clk, log: logger, change: make(chan struct{}, 1)}
	sink, err := cfg.open(logger)
	if err != nil {
		return nil, err
	}
	l.sink = sink
	if sink == nil {
		logger.Info("status LED disabled", "reason", cfg.disabledReason())
	} else {
		logger.Info("status LED", "led", sink.String(), "active_low", cfg.ActiveLow)
	}
	return l, nil
}

// Enabled reports whether a physical LED is attached.
func (l *LED) Enabled() bool { return l.sink != nil }

// Set changes what the LED shows; the new pattern starts at once.
func (l *LED) Set(s LEDState) {
	l.mu.Lock()
	changed := l.state != s
	l.state = s
	l.mu.Unlock()
	if changed {
		select {
		case l.change <- struct{}{}:
		default: // Run has a change pending already; it reads the latest state.
		}
	}
}

// State returns what the LED is showing.
func (l *LED) State() LEDState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Run drives the blink pattern until ctx ends, then turns the LED off and
// gives it back to the kernel (sysfs LEDs get their old trigger again).
// Failing writes are logged, once until a write succeeds again; they never
// stop the agent.
func (l *LED) Run(ctx context.Context) error {
	if l.sink == nil {
		<-ctx.Done()
		return nil
	}
	w := ledWriter{sink: l.sink, log: l.log}
	defer func() {
		w.set(false)
		if err := l.sink.close(); err != nil {
			l.log.Warn("release status LED", "led", l.sink.String(), "err", err)
		}
	}()
	st := l.State()
	for l.blink(ctx, &w, st) {
		st = l.State()
	}
	return nil
}

// blink shows the pattern of st until the LED's state is something else
// (true) or ctx ends (false).
func (l *LED) blink(ctx context.Context, w *ledWriter, st LEDState) bool {
	p := PatternFor(st)
	if len(p.Steps) == 0 {
		w.set(p.On)
		return l.hold(ctx, st, nil)
	}
	for i := 0; ; i++ {
		step := i % len(p.Steps)
		w.set(step%2 == 0)
		t := l.clock.NewTimer(p.Steps[step])
		changed := l.hold(ctx, st, t.C())
		t.Stop()
		if changed || ctx.Err() != nil {
			return changed
		}
	}
}

// hold keeps the LED as it is until next delivers (false), the state
// changes from st (true) or ctx ends (false). A nil next never delivers:
// a steady LED waits for a change.
func (l *LED) hold(ctx context.Context, st LEDState, next <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-l.change:
			if l.State() != st {
				return true
			}
		case <-next:
			return false
		}
	}
}

// ledWriter logs the first failing write and the recovery, not every
// blink in between.
type ledWriter struct {
	sink    ledSink
	log     *slog.Logger
	failing bool
}

func (w *ledWriter) set(on bool) {
	err := w.sink.set(on)
	switch {
	case err != nil && !w.failing:
		w.failing = true
		w.log.Warn("set status LED failed; retrying quietly", "led", w.sink.String(), "err", err)
	case err == nil && w.failing:
		w.failing = false
		w.log.Info("status LED works again", "led", w.sink.String())
	}
}

var errBothLEDs = errors.New("led: set gpio or sysfs, not both")
