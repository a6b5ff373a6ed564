package faults

import (
	"strings"
	"testing"
	"time"
)

// atRenewal waits for a's next will_expire on video — its renewal
// request goes out at that moment — and returns that line, which names
// the expiry of the token being renewed.
func atRenewal(t *testing.T, a *agentProc) watchLine {
	t.Helper()
	return a.w.waitEvent(t, a.w.mark(), "will_expire", "video", 2*scenarioTTL)
}

// TestPathDegraded: dev-1's path to the broker is slowed in three ways,
// each over a whole renewal: 800 ms of delay each way, a throttle of
// 1000 bytes per second, and every connection reset at the moment a
// renewal goes out. None of them cuts the path, so the promise holds with
// no grace at all for the delay and the throttle: each renewal arrives
// before the token it replaces expires. A reset is a fault that ends as
// it happens: the grace runs from it. dev-2, on a clean path, is the
// control.
func TestPathDegraded(t *testing.T) {
	t.Parallel()
	f := newFleet(t, fleetOptions{Agents: 2, TTL: scenarioTTL, RenewBefore: scenarioRenewBefore})
	f.waitAllTokens(15 * time.Second)
	dev1 := f.agent("dev-1")

	for _, fault := range []struct {
		name  string
		apply func()
	}{
		{"delayed 800ms", func() { dev1.proxy.Delay(800 * time.Millisecond) }},
		{"throttled to 1000 B/s", func() { dev1.proxy.Throttle(1000) }},
	} {
		renewing := atRenewal(t, dev1)
		f.tl.note("dev-1: path " + fault.name)
		fault.apply()
		if renewal(t, dev1, renewing) <= 0 {
			t.Errorf("dev-1: over a path %s the renewal came after the token expired", fault.name)
		}
		dev1.proxy.Restore()
		f.tl.note("dev-1: path back to normal")
	}
	renewing := atRenewal(t, dev1)
	dev1.reset(f.tl)
	renewal(t, dev1, renewing)
	dev1.d.waitLog(t, 10*time.Second, func(s string) bool { return strings.Contains(s, "lost the broker") })

	f.settle(f.marks())
	f.assertPromise()
}

// TestPathCut: dev-1's path is cut while a renewal is on its way — first
// refused for 2 s (every connection reset, new ones closed, as an access
// point that drops the device), then blackholed for 0.5 s (bytes
// swallowed, connections left open, as Wi-Fi that fades without a RST) —
// then restored. Within the grace of the restore dev-1 holds a valid token
// again; a blackholed connection stays dead after the restore, so the
// agent must notice that by itself. dev-2 is the control.
//
// The agents' keepalive is 20 s, well over renew_before as the shipped
// 60 s is over the shipped 30 s: noticing a dead link while a renewal
// waits is the agent's job, not the keepalive's.
func TestPathCut(t *testing.T) {
	t.Parallel()
	f := newFleet(t, fleetOptions{Agents: 2, TTL: scenarioTTL, RenewBefore: scenarioRenewBefore, Keepalive: 20 * time.Second})
	f.waitAllTokens(15 * time.Second)
	dev1 := f.agent("dev-1")

	for _, cut := range []struct {
		how string
		d   time.Duration
	}{
		{"refused", 2 * time.Second},
		// Short, so that the restore comes long before an agent that
		// only trusts its keepalive could notice the dead connection.
		{"blackholed", 500 * time.Millisecond},
	} {
		how := cut.how
		atRenewal(t, dev1)
		logBefore := len(dev1.d.log.String())
		dev1.cut(f.tl, how)
		pause(cut.d) // the length of the cut
		dev1.restore(f.tl)
		// After the grace, the camera must hold a valid token again; a
		// fresh one arrives within it unless the agent misses that its
		// connection is dead. The wait allows for an agent that finds
		// out only from its keepalive (plus paho's 10 s ping timeout):
		// then the checker reports the gap, rather than this wait.
		mark := dev1.w.mark()
		dev1.w.waitLine(t, mark, 2*f.opts.Keepalive+grace, nil, "video token after the restore", func(l watchLine) bool {
			return l.Event == "token" && l.Name == "video"
		})
		// The agent's log says what happened: the connection lost (or
		// dropped as dead), then made again. (Its log may trail its
		// socket by a moment: both are pipes.)
		dev1.d.waitLog(t, 10*time.Second, func(log string) bool {
			run := log[logBefore:]
			return (strings.Contains(run, "lost the broker") || strings.Contains(run, "dropping the broker connection")) &&
				strings.Contains(run, "connected to the broker")
		})
	}
	f.settle(f.marks())
	f.assertPromise()
}
