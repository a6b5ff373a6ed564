package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestIssuerKilledAtRandomMoments: the issuer is SIGKILLed and started
// again, over and over, at moments drawn from a logged seed — some land
// mid-renewal, some right after a start. Each run of the issuer serves
// again, every camera holds a valid token whenever the issuer has been
// back for the grace, and renewals go on after the last kill.
func TestIssuerKilledAtRandomMoments(t *testing.T) {
	t.Parallel()
	r := seeded(t)
	f := newFleet(t, fleetOptions{Agents: 2, TTL: scenarioTTL, RenewBefore: scenarioRenewBefore})
	f.waitAllTokens(15 * time.Second)
	const kills = 5
	for i := 0; i < kills; i++ {
		pause(between(r, 500*time.Millisecond, 9*time.Second))
		f.issuer.kill()
		pause(between(r, 0, 3*time.Second))
		serving := f.servings()
		f.issuer.start()
		f.waitIssuerServing(serving)
	}
	f.settle(f.marks())
	v := f.assertPromise()
	if v.Renewals < 2*kills {
		t.Errorf("%d renewals across %d issuer kills; renewal did not go on", v.Renewals, kills)
	}
}

// TestIssuerDownLongerThanTTL: with the issuer gone for longer than a
// token lives, every client is told "expired" (and the agent hands the
// token out no more); when the issuer returns every camera recovers by
// itself, within the grace. The seconds to recovery are logged.
func TestIssuerDownLongerThanTTL(t *testing.T) {
	t.Parallel()
	f := newFleet(t, fleetOptions{Agents: 2, TTL: scenarioTTL, RenewBefore: scenarioRenewBefore})
	f.waitAllTokens(15 * time.Second)
	marks := f.marks()
	f.issuer.stop()
	for _, a := range f.agents {
		for _, name := range []string{"video", "signal"} {
			a.w.waitEvent(t, marks[a.id], "expired", name, 2*scenarioTTL)
		}
	}
	// Expired means not handed out: get says unavailable, status expired.
	dev1 := f.agent("dev-1")
	if reply := askSocket(t, dev1.sock, `{"op":"get","name":"video"}`); reply["code"] != "unavailable" {
		t.Errorf("get of an expired token answered %v, want the error unavailable", reply)
	}
	if st := askSocket(t, dev1.sock, `{"op":"status"}`); !strings.Contains(fmt.Sprint(st["tokens"]), "state:expired") {
		t.Errorf("status with expired tokens says %v", st)
	}

	marks = f.marks()
	back := wallNow()
	serving := f.servings()
	f.issuer.start()
	f.waitIssuerServing(serving)
	var worst time.Duration
	for _, a := range f.agents {
		for _, name := range []string{"video", "signal"} {
			l := a.w.waitToken(t, marks[a.id], name, 2*grace)
			took := l.At.Sub(back)
			worst = max(worst, took)
			t.Logf("%s %s: valid again %.2fs after the issuer was started again", a.id, name, took.Seconds())
		}
	}
	t.Logf("recovery: every camera held valid tokens again %.2fs after the issuer returned (grace %v)", worst.Seconds(), grace)
	// The agents' logs tell the story: the expiry, then the recovery.
	for _, a := range f.agents {
		a.d.waitLog(t, 10*time.Second, func(log string) bool {
			return strings.Contains(log, `msg="token expired before a fresh one arrived"`) &&
				strings.Contains(log, `msg="token request succeeded after failures"`)
		})
	}
	f.settle(f.marks())
	f.assertPromise()
}

// TestAgentRestartedWhileIssuerDown: the issuer is down and the agent's
// path to the broker refuses connections; the agent is SIGKILLed right
// after a renewal and started again. Its socket serves a persisted token
// that is still valid — the one it handed out last — before it has
// reached the broker; once the path and then the issuer are back it
// renews as usual.
func TestAgentRestartedWhileIssuerDown(t *testing.T) {
	t.Parallel()
	f := newFleet(t, fleetOptions{Agents: 2, TTL: scenarioTTL, RenewBefore: scenarioRenewBefore})
	f.waitAllTokens(15 * time.Second)
	dev1 := f.agent("dev-1")
	// Right after a renewal, so that the persisted token has most of its
	// life left.
	first := dev1.w.waitToken(t, 0, "video", 10*time.Second)
	held := dev1.w.waitToken(t, dev1.w.indexAfter(first), "video", 2*scenarioTTL)

	f.issuer.kill()
	dev1.cut(f.tl, "refused")
	dev1.d.kill()
	mark := dev1.w.mark()
	logBefore := len(dev1.d.log.String())
	dev1.d.start()

	got := dev1.w.waitToken(t, mark, "video", 10*time.Second)
	if got.Token != held.Token && got.Token != first.Token {
		t.Errorf("after the restart the socket served a video token the camera never held (expires_at %d)", got.ExpiresAt)
	}
	if !got.At.Before(time.Unix(got.ExpiresAt, 0)) {
		t.Errorf("the persisted token was served %.1fs after it expired", got.At.Sub(time.Unix(got.ExpiresAt, 0)).Seconds())
	}
	if got.Token != held.Token {
		t.Errorf("killed just after handing out a token, the agent came back with the one before it "+
			"(expires_at %d instead of %d): it persists a token after telling its clients, not before", got.ExpiresAt, held.ExpiresAt)
	}
	if st := askSocket(t, dev1.sock, `{"op":"status"}`); st["broker"] == "connected" {
		t.Errorf("status says the broker is connected, but the path refuses every connection")
	}
	// The log may trail the socket by a moment (both are pipes).
	dev1.d.waitLog(t, 10*time.Second, func(log string) bool {
		return strings.Contains(log[logBefore:], `msg="serving persisted token"`)
	})
	run := dev1.d.log.String()[logBefore:]
	served := strings.Index(run, `msg="serving persisted token"`)
	connected := strings.Index(run, `msg="connected to the broker"`)
	if served < 0 || (connected >= 0 && connected < served) {
		t.Errorf("the restarted agent's log does not say it served the persisted token before reaching the broker:\n%s", tail(run, 20))
	}

	dev1.restore(f.tl)
	dev1.d.waitLog(t, 2*grace, func(s string) bool { return strings.Contains(s[logBefore:], `msg="connected to the broker"`) })
	serving := f.servings()
	f.issuer.start()
	f.waitIssuerServing(serving)
	f.settle(f.marks())
	f.assertPromise()
}

// askSocket sends one request line to an agent's socket and returns the
// reply as a map (tokens left out of failure messages by the callers).
func askSocket(t *testing.T, path, line string) map[string]any {
	t.Helper()
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	raw, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		t.Fatalf("read the reply to %s: %v", line, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("reply to %s is not JSON: %v", line, err)
	}
	delete(m, "token")
	return m
}
