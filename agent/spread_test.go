package agent

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"agoratokens/clock"
	"agoratokens/wire"
)

// The renewal window tests use 1000 s tokens, renew_before 30 s and the
// default window: renewal starts in [600 s, 800 s), will_expire is due at
// 970 s.
const (
	spreadLife   = 1000 * time.Second
	spreadWarnAt = 970 * time.Second
)

func spreadConfig(dir string, tokens ...string) Config {
	c := testConfig(dir, tokens...)
	c.RenewWindow = RenewWindow{DefaultRenewWindowStart, DefaultRenewWindowEnd}
	return c
}

// startSeeded is startHarness with the engine's renewal draws seeded.
func startSeeded(t *testing.T, cfg Config, clk *clock.Fake, boot *fakeBoot, seed uint64) *harness {
	t.Helper()
	tr := newFakeTransport()
	tr.seed = seed
	return startHarnessOn(t, cfg, clk, boot, tr)
}

// renewAt is the drawn renewal point of the named token's current token,
// as a clock reading.
func (h *harness) renewAt(name string) time.Time {
	h.t.Helper()
	h.e.mu.Lock()
	defer h.e.mu.Unlock()
	s := h.e.slots[name]
	if s == nil || s.tok == nil {
		h.t.Fatalf("no token %q held", name)
	}
	return s.tok.ReceivedAt.Add(s.renewAt)
}

// stepUntilRequest advances the clock by step until the engine has a
// request in flight, at most limit in all; it returns the clock reading
// then.
func (h *harness) stepUntilRequest(step, limit time.Duration) time.Time {
	h.t.Helper()
	for moved := time.Duration(0); h.inflight() == 0; moved += step {
		if moved >= limit {
			h.t.Fatalf("no request within %v", limit)
		}
		h.advance(step)
		h.noEvent()
	}
	return h.clk.Now()
}

// A healthy device renews each token once, at a point drawn in the window
// when the token arrived (not redrawn as time passes), never before the
// window, and never shows will_expire.
func TestEngineRenewsInsideTheWindow(t *testing.T) {
	h := startSeeded(t, spreadConfig(t.TempDir(), "video"), nil, nil, 7)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), int64(spreadLife/time.Second)))
	h.event(EventToken, "video")
	var points []time.Duration
	for cycle := range 4 {
		got := h.clk.Now() // the reply was taken at once: the token counts from now
		at := h.renewAt("video")
		if off := at.Sub(got); off < 600*time.Second || off >= 800*time.Second {
			t.Fatalf("cycle %d: drawn point +%v is outside [600s, 800s)", cycle, off)
		}
		h.advance(600*time.Second - time.Millisecond)
		if n := h.inflight(); n != 0 {
			t.Fatalf("cycle %d: %d requests before the window", cycle, n)
		}
		h.noEvent()
		if again := h.renewAt("video"); !again.Equal(at) {
			t.Fatalf("cycle %d: drawn point moved from +%v to +%v", cycle, at.Sub(got), again.Sub(got))
		}
		sent := h.stepUntilRequest(100*time.Millisecond, 200*time.Second)
		if late := sent.Sub(at); late < 0 || late >= 100*time.Millisecond {
			t.Fatalf("cycle %d: request %v after the drawn point, want within one 100 ms step", cycle, late)
		}
		points = append(points, sent.Sub(got))
		h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), int64(spreadLife/time.Second)))
		h.event(EventToken, "video")
		h.e.sync()
		h.noEvent() // no will_expire: the renewal came in time
		if hl := h.health(); hl.Renewing || hl.Failing || hl.Expired {
			t.Fatalf("cycle %d: health %+v after a renewal, want all clear", cycle, hl)
		}
	}
	slices.Sort(points)
	if len(slices.Compact(points)) < 3 {
		t.Fatalf("renewal points %v: drawn once per token, they should differ", points)
	}
}

// will_expire comes renew_before ahead of expiry, only to a device whose
// renewal has not succeeded by then; when the issuer comes back the token
// is renewed before expiry and nothing expires.
func TestEngineWillExpireOnlyWhenRenewalFails(t *testing.T) {
	h := startSeeded(t, spreadConfig(t.TempDir(), "video"), nil, nil, 3)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), int64(spreadLife/time.Second)))
	h.event(EventToken, "video")
	start := h.clk.Now()
	failures := 0
	for h.clk.Now().Sub(start) < spreadWarnAt {
		h.advance(time.Second)
		if h.clk.Now().Sub(start) < spreadWarnAt {
			h.noEvent()
		}
		for h.inflight() > 0 {
			h.tr.next(t).fail(wire.CodeUnavailable, 0)
			failures++
			waitFailure(t, h)
		}
	}
	if failures < 10 {
		t.Fatalf("%d failed renewals between the drawn point and 970 s, want many", failures)
	}
	ev := h.event(EventWillExpire, "video")
	if left := ev.Token.ExpiresIn(ev.At); left != 30*time.Second {
		t.Fatalf("will_expire %v before expiry, want renew_before (30s)", left)
	}
	if hl := h.health(); !hl.Failing || !hl.Renewing {
		t.Fatalf("health %+v, want failing renewals", hl)
	}
	// The issuer is back: the next retry is answered.
	h.stepUntilRequest(time.Second, 10*time.Second)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), int64(spreadLife/time.Second)))
	h.event(EventToken, "video")
	h.advance(40 * time.Second) // past the old token's expiry
	h.noEvent()
}

// A broker outage that begins before the drawn point and ends before
// will_expire is due costs nothing: the renewal waits for the connection,
// goes out at once then, and no will_expire or expired is ever shown.
func TestEngineShortOutageCostsNothing(t *testing.T) {
	h := startSeeded(t, spreadConfig(t.TempDir(), "video"), nil, nil, 11)
	hooks := <-h.tr.hooks
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), int64(spreadLife/time.Second)))
	h.event(EventToken, "video")
	start := h.clk.Now()
	at := h.renewAt("video")
	h.advance(at.Sub(start) - 10*time.Second)
	hooks.Disconnected()
	h.e.sync()
	// Down from 10 s before the drawn point to 30 s before will_expire.
	for h.clk.Now().Sub(start) < spreadWarnAt-30*time.Second {
		h.advance(5 * time.Second)
		h.noEvent()
		if n := h.inflight(); n != 0 {
			t.Fatalf("%d requests sent while disconnected", n)
		}
	}
	if hl := h.health(); !hl.Failing || !hl.Renewing {
		t.Fatalf("health %+v during the outage past the drawn point, want renewal waiting", hl)
	}
	// Back 30 s before will_expire is due, past the window: the held
	// renewal goes out in the first half of those 30 s.
	hooks.Connected()
	back := h.clk.Now()
	sent := h.stepUntilRequest(100*time.Millisecond, 30*time.Second)
	if d := sent.Sub(back); d > 15*time.Second {
		t.Fatalf("held renewal sent %v after the reconnection, want within 15 s", d)
	}
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), int64(spreadLife/time.Second)))
	h.event(EventToken, "video")
	h.advance(spreadLife - sent.Sub(start) + time.Second) // past the old token's expiry
	h.noEvent()
	if hl := h.health(); hl != (Health{}) {
		t.Fatalf("health %+v after the outage, want all clear", hl)
	}
	if l := h.logLines("level=WARN"); len(l) != 0 {
		t.Fatalf("the outage left warnings: %q", l)
	}
}

// After a power cut, persisted tokens that are still valid are served and
// nothing is asked for at boot — with a tokens list, and without one
// (every granted token). They are renewed in what is left of their
// window.
func TestEngineBootWithValidPersistedTokensAsksNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tokens []string
		off    time.Duration // the power cut, from the tokens' arrival
		lo, hi time.Duration // where renewal may start, from the tokens' arrival
	}{
		{"tokens list, cut before the window", []string{"video", "signal"}, 100 * time.Second, 600 * time.Second, 800 * time.Second},
		{"all granted, cut before the window", nil, 100 * time.Second, 600 * time.Second, 800 * time.Second},
		{"all granted, back inside the window", nil, 700 * time.Second, 700 * time.Second, 800 * time.Second},
		{"tokens list, back past the window", []string{"video", "signal"}, 850 * time.Second, 850 * time.Second, 910 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clk := clock.NewFake(time.Unix(1_763_800_000, 0))
			boot := &fakeBoot{id: "boot-a", clk: clk, start: clk.Now()}
			h := startSeeded(t, spreadConfig(dir, tc.tokens...), clk, boot, 5)
			life := int64(spreadLife / time.Second)
			h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), life), mkGrant(t, "signal", "cam-42", "7", h.wall(), life))
			h.event(EventToken, "video")
			h.event(EventToken, "signal")
			got := clk.Now()
			h.e.sync() // persisted
			h.stop()

			clk.Advance(tc.off)
			// Another boot: aged by the wall clock.
			h2 := startSeeded(t, spreadConfig(dir, tc.tokens...), clk, &fakeBoot{id: "boot-b", clk: clk, start: clk.Now()}, 6)
			h2.e.sync()
			h2.e.sync()
			if n := h2.inflight(); n != 0 {
				t.Fatalf("%d requests at boot with valid persisted tokens, want none", n)
			}
			for _, n := range []string{"video", "signal"} {
				if _, ok := h2.e.Current(n, clk.Now()); !ok {
					t.Fatalf("persisted %s not served at boot", n)
				}
			}
			if st := h2.e.Status(clk.Now()); len(st.Tokens) != 2 {
				t.Fatalf("status lists %d tokens, want the 2 persisted", len(st.Tokens))
			}
			sent := h2.stepUntilRequest(100*time.Millisecond, spreadLife)
			if off := sent.Sub(got); off < tc.lo || off > tc.hi {
				t.Fatalf("renewal at +%v, want in [%v, %v]", off, tc.lo, tc.hi)
			}
			r := h2.tr.next(t)
			if tc.tokens == nil && r.Tokens != nil {
				t.Fatalf("renewal without a tokens list names %v, want none (every granted token)", r.Tokens)
			}
			if tc.tokens != nil && len(r.Tokens) == 0 {
				t.Fatal("renewal with a tokens list names none")
			}
		})
	}
}

// Twenty engines (in process, one fake clock, different seeds) booted
// together on 100 s tokens renew at distinct moments inside their window,
// and none shows will_expire while the issuer answers.
func TestFleetRenewalsSpread(t *testing.T) {
	const agents = 20
	const step = 10 * time.Millisecond
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	cfg := func() Config {
		c := spreadConfig(t.TempDir(), "video")
		c.RenewBefore = 10 * time.Second // window [60 s, 80 s), will_expire at 90 s
		return c
	}
	var fleet []*harness
	for i := range agents {
		fleet = append(fleet, startSeeded(t, cfg(), clk, nil, uint64(i+1)))
	}
	for i, h := range fleet {
		h.tr.next(t).answer(mkGrant(t, "video", "cam-42", fmt.Sprint(i+1), h.wall(), 100))
		h.event(EventToken, "video")
	}
	start := clk.Now()
	advance := func(d time.Duration) {
		clk.Advance(d)
		for _, h := range fleet {
			h.e.sync()
		}
	}
	advance(60*time.Second - step)
	sent := map[time.Duration]int{}
	renewed := make([]bool, agents)
	for clk.Now().Sub(start) < 100*time.Second+step {
		advance(step)
		for i, h := range fleet {
			h.noEvent() // in particular no will_expire, no expired
			if h.inflight() == 0 {
				continue
			}
			at := clk.Now().Sub(start)
			if renewed[i] {
				t.Fatalf("agent %d renewed twice in one cycle (again at %v)", i, at)
			}
			if at < 60*time.Second || at >= 80*time.Second {
				t.Fatalf("agent %d renewed at %v, outside its window [60s, 80s)", i, at)
			}
			renewed[i] = true
			sent[at]++
			h.tr.next(t).answer(mkGrant(t, "video", "cam-42", fmt.Sprint(i+1), h.wall(), 100))
			h.event(EventToken, "video")
		}
	}
	var moments []time.Duration
	for at, n := range sent {
		if n > 1 {
			t.Errorf("%d agents renewed in the same %v step at %v", n, step, at)
		}
		moments = append(moments, at)
	}
	if len(moments) != agents {
		t.Fatalf("%d agents renewed in the cycle, want %d", len(moments), agents)
	}
	slices.Sort(moments)
	t.Logf("renewals at %v", moments)
	if spread := moments[agents-1] - moments[0]; spread < 10*time.Second {
		t.Fatalf("renewals span %v of the 20 s window, want them spread", spread)
	}
}

// Without a tokens list, a persisted token that expired during the power
// cut is asked for at boot (one request for every granted token), even
// though another persisted token is still valid and served.
func TestEngineBootAsksForAPersistedTokenThatExpired(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	h := startSeeded(t, spreadConfig(dir), clk, nil, 5)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 1000), mkGrant(t, "signal", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.event(EventToken, "signal")
	h.e.sync()
	h.stop()

	clk.Advance(200 * time.Second) // signal (100 s) expired during the cut, video has 800 s left
	h2 := startSeeded(t, spreadConfig(dir), clk, &fakeBoot{id: "boot-b", clk: clk, start: clk.Now()}, 6)
	if _, ok := h2.e.Current("video", clk.Now()); !ok {
		t.Fatal("persisted video not served at boot")
	}
	r := h2.tr.next(t)
	if r.Tokens != nil {
		t.Fatalf("boot request names %v, want none (every granted token)", r.Tokens)
	}
	if st := h2.e.Status(clk.Now()); len(st.Tokens) != 2 {
		t.Fatalf("status lists %+v, want video and signal", st.Tokens)
	}
	r.answer(mkGrant(t, "video", "cam-42", "7", h2.wall(), 1000), mkGrant(t, "signal", "cam-42", "7", h2.wall(), 100))
	h2.event(EventToken, "video")
	h2.event(EventToken, "signal")
}

// Twenty engines whose renewals fell due during a broker outage do not
// all send them as they reconnect: each draws a new point in the first
// half of what is left before will_expire, and none shows will_expire.
func TestFleetHeldRenewalsSpreadAfterOutage(t *testing.T) {
	const agents = 20
	const step = time.Millisecond
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	var fleet []*harness
	var hooks []TransportHooks
	for i := range agents {
		c := spreadConfig(t.TempDir(), "video")
		c.RenewBefore = 10 * time.Second // window [60 s, 80 s), will_expire at 90 s
		h := startSeeded(t, c, clk, nil, uint64(100+i))
		fleet = append(fleet, h)
		hooks = append(hooks, <-h.tr.hooks)
		h.tr.next(t).answer(mkGrant(t, "video", "cam-42", fmt.Sprint(i+1), h.wall(), 100))
		h.event(EventToken, "video")
	}
	start := clk.Now()
	advance := func(d time.Duration) {
		clk.Advance(d)
		for _, h := range fleet {
			h.e.sync()
		}
	}
	advance(55 * time.Second)
	for i, h := range fleet {
		hooks[i].Disconnected()
		h.e.sync()
	}
	advance(26 * time.Second) // every drawn point has passed
	for i, h := range fleet {
		if n := h.inflight(); n != 0 {
			t.Fatalf("agent %d: %d requests while disconnected", i, n)
		}
		hooks[i].Connected()
	}
	sent := map[time.Duration]int{}
	renewed := 0
	for renewed < agents {
		if clk.Now().Sub(start) > 85500*time.Millisecond {
			t.Fatalf("%d of %d held renewals sent by 85.5 s (reconnected at 81 s, will_expire at 90 s)", renewed, agents)
		}
		advance(step)
		for i, h := range fleet {
			h.noEvent() // no will_expire
			if h.inflight() == 0 {
				continue
			}
			renewed++
			sent[clk.Now().Sub(start)]++
			h.tr.next(t).answer(mkGrant(t, "video", "cam-42", fmt.Sprint(i+1), h.wall(), 100))
			h.event(EventToken, "video")
		}
	}
	var moments []time.Duration
	for at, n := range sent {
		if n > 2 {
			t.Errorf("%d agents sent their held renewal in the same %v step at %v", n, step, at)
		}
		moments = append(moments, at)
	}
	slices.Sort(moments)
	t.Logf("held renewals at %v", moments)
	if spread := moments[len(moments)-1] - moments[0]; spread < 2*time.Second {
		t.Fatalf("held renewals span %v of 4.5 s, want them spread", spread)
	}
}
