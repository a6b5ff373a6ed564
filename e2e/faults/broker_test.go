package faults

import (
	"strings"
	"testing"
	"time"
)

// Scenario lifetimes: tokens of 12 s renewed 6 s ahead, so a renewal
// falls due every 6 s and a fault has 6 s of slack before a token ends.
const (
	scenarioTTL         = 12 * time.Second
	scenarioRenewBefore = 6 * time.Second
)

// settle waits until every camera has received two fresh tokens of each
// name after mark (one per camera, from agent.w.mark()): renewal goes on
// after the fault, for everyone.
func (f *fleet) settle(marks map[string]int) {
	f.t.Helper()
	for _, a := range f.agents {
		for _, name := range []string{"video", "signal"} {
			from := marks[a.id]
			for i := 0; i < 2; i++ {
				l := a.w.waitToken(f.t, from, name, 3*scenarioTTL)
				from = a.w.indexAfter(l)
			}
		}
	}
}

// marks returns every watcher's current position.
func (f *fleet) marks() map[string]int {
	m := map[string]int{}
	for _, a := range f.agents {
		m[a.id] = a.w.mark()
	}
	return m
}

// holdUntilRenewing delays dev's path, then waits for its will_expire on
// video: its renewal request is then on the way, held by the proxy, when
// the caller breaks something — the fault lands mid-renewal.
func (f *fleet) holdUntilRenewing(a *agentProc) (old watchLine) {
	f.t.Helper()
	old = a.w.waitToken(f.t, 0, "video", 10*time.Second)
	a.proxy.Delay(time.Second)
	f.tl.note(a.id + ": path delayed by 1s")
	a.w.waitEvent(f.t, a.w.indexAfter(old), "will_expire", "video", 2*scenarioTTL)
	return old
}

// renewedBefore fails unless a has received a video token after old, and
// did so before old expired.
func renewedBefore(t *testing.T, a *agentProc, old watchLine) {
	t.Helper()
	l := a.w.waitToken(t, a.w.indexAfter(old), "video", 2*scenarioTTL)
	if exp := time.Unix(old.ExpiresAt, 0); !l.At.Before(exp) {
		t.Errorf("%s: the renewal after the fault came %.1fs after the old token expired", a.id, l.At.Sub(exp).Seconds())
	} else {
		t.Logf("%s: renewed %.1fs before the old token would have expired", a.id, exp.Sub(l.At).Seconds())
	}
}

// TestMosquittoRestartMidRenewal: mosquitto dies while a renewal request
// is on its way and comes back a moment later. Every camera keeps a valid
// token throughout (the outage is shorter than renew_before), the
// interrupted renewal completes before the old token expires, renewals go
// on, and the logs of both sides say the broker went away.
func TestMosquittoRestartMidRenewal(t *testing.T) {
	t.Parallel()
	f := newFleet(t, fleetOptions{Agents: 2, TTL: scenarioTTL, RenewBefore: scenarioRenewBefore})
	f.waitAllTokens(15 * time.Second)
	dev1 := f.agent("dev-1")
	old := f.holdUntilRenewing(dev1)

	serving := f.servings()
	f.stopBroker()
	for _, a := range f.agents {
		a.d.waitLog(t, 20*time.Second, func(s string) bool { return strings.Contains(s, "lost the broker") })
	}
	f.issuer.waitLog(t, 20*time.Second, func(s string) bool { return strings.Contains(s, "broker connection lost") })
	f.startBroker()
	dev1.proxy.Restore()
	f.tl.note("dev-1: path delay removed")
	marks := f.marks()
	f.waitIssuerServing(serving)
	renewedBefore(t, dev1, old)
	f.settle(marks)
	f.assertPromise()
}

// TestEmbeddedBrokerRestartMidRenewal: the same with the issuer's
// embedded broker, which lives in the issuer's process: the issuer is
// SIGKILLed (broker and all) while a renewal is on its way, and started
// again on the same port.
func TestEmbeddedBrokerRestartMidRenewal(t *testing.T) {
	t.Parallel()
	f := newFleet(t, fleetOptions{Agents: 2, TTL: scenarioTTL, RenewBefore: scenarioRenewBefore, Embedded: true})
	f.waitAllTokens(15 * time.Second)
	dev1 := f.agent("dev-1")
	old := f.holdUntilRenewing(dev1)

	f.issuer.kill()
	for _, a := range f.agents {
		a.d.waitLog(t, 20*time.Second, func(s string) bool { return strings.Contains(s, "lost the broker") })
	}
	serving := f.servings()
	f.issuer.start()
	dev1.proxy.Restore()
	f.tl.note("dev-1: path delay removed")
	marks := f.marks()
	f.waitIssuerServing(serving)
	renewedBefore(t, dev1, old)
	f.settle(marks)
	f.assertPromise()
}
