// Package sdnotify tells systemd how the agent (or the issuer) is doing:
// READY=1 once it serves, a STATUS= line for `systemctl status`, and the
// watchdog pings that let systemd restart a hung main loop
// (WatchdogSec= in the unit). Outside systemd (no NOTIFY_SOCKET) every
// call does nothing, so the binaries run the same from a shell.
package sdnotify

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends notifications to systemd. Its methods are safe for
// concurrent use. A failed notification is logged (once, until one
// succeeds again), never returned from the frequent calls: the agent's
// work matters more than telling systemd about it.
type Notifier struct {
	log      *slog.Logger
	watchdog time.Duration // 0: no watchdog requested

	mu      sync.Mutex
	failing bool
	status  string // last STATUS= sent, to skip repeats
}

// New reads NOTIFY_SOCKET and WATCHDOG_USEC (and WATCHDOG_PID) from the
// environment systemd gave the process. A malformed WATCHDOG_USEC is
// logged and treated as no watchdog. A nil logger discards.
func New(logger *slog.Logger) *Notifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{log: logger}
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		logger.Warn("systemd watchdog disabled: bad WATCHDOG_USEC", "err", err)
		d = 0
	}
	n.watchdog = d
	return n
}

// WatchdogInterval is the WatchdogSec= systemd asked for, and whether it
// asked. Ping at least every half of it (PingEvery).
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	return n.watchdog, n.watchdog > 0
}

// PingEvery is how often the main loop should call Ping: half the
// watchdog interval, as sd_watchdog_enabled(3) advises; 0 when systemd
// runs no watchdog for this process.
func (n *Notifier) PingEvery() time.Duration { return n.watchdog / 2 }

// Ready says startup is done: for the agent, once the Unix socket
// listens. Unlike the other calls it returns its error, because a unit
// with Type=notify waits for it and fails the start on timeout.
func (n *Notifier) Ready() error {
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		return fmt.Errorf("notify systemd ready: %w", err)
	}
	return nil
}

// Status sets the one-line status `systemctl status` shows. Newlines are
// flattened (each would start a new notify field). Repeats of the same
// text are not sent again.
func (n *Notifier) Status(text string) {
	text = strings.Join(strings.Fields(text), " ")
	n.mu.Lock()
	same := text == n.status
	n.status = text
	n.mu.Unlock()
	if !same {
		n.send("STATUS=" + text)
	}
}

// Ping tells the watchdog the main loop is alive. It does nothing when
// no watchdog runs.
func (n *Notifier) Ping() {
	if n.watchdog > 0 {
		n.send(daemon.SdNotifyWatchdog)
	}
}

// Reloading says a SIGHUP reload started; call Ready when it is done.
func (n *Notifier) Reloading() {
	n.send(daemon.SdNotifyReloading)
}

// Stopping says shutdown began, so systemd does not take the quiet
// that follows for a hang.
func (n *Notifier) Stopping() {
	n.send(daemon.SdNotifyStopping)
}

func (n *Notifier) send(state string) {
	_, err := daemon.SdNotify(false, state)
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case err != nil && !n.failing:
		n.failing = true
		field, _, _ := strings.Cut(state, "=")
		n.log.Warn("notify systemd failed", "field", field, "err", err)
	case err == nil && n.failing:
		n.failing = false
		n.log.Info("notify systemd works again")
	}
}
