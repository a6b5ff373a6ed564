package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"agoratokens/clock"
	"agoratokens/wire"
)

func TestEngineRenewsEachCycleBeforeExpiry(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	r := h.tr.next(t)
	if len(r.Tokens) != 1 || r.Tokens[0] != "video" {
		t.Fatalf("first request asks for %v, want [video]", r.Tokens)
	}
	r.answer(mkGrant(t, "video", "cam-42", "2882341273", h.wall(), 100))
	h.event(EventToken, "video")
	for cycle := range 3 {
		h.advance(70*time.Second - time.Millisecond)
		if n := h.inflight(); n != 0 {
			t.Fatalf("cycle %d: %d requests before the renewal point, want 0", cycle, n)
		}
		h.noEvent()
		if _, ok := h.e.Current("video", h.clk.Now()); !ok {
			t.Fatalf("cycle %d: token not current before renewal", cycle)
		}
		h.advance(time.Millisecond)
		h.event(EventWillExpire, "video")
		r := h.tr.next(t)
		r.answer(mkGrant(t, "video", "cam-42", "2882341273", h.wall(), 100))
		ev := h.event(EventToken, "video")
		if got := ev.Token.ExpiresIn(h.clk.Now()); got != 100*time.Second {
			t.Fatalf("cycle %d: renewed token expires in %v, want 100s", cycle, got)
		}
	}
	if st := h.e.Status(h.clk.Now()); st.Tokens[0].State != StateValid || st.Device != "dev-1" {
		t.Fatalf("status = %+v, want video valid on dev-1", st)
	}
	if st := h.tr.lastStatus(); st.State != wire.StateOnline || len(st.Tokens) != 1 || st.Tokens[0].KID != "primary" {
		t.Fatalf("reported status = %+v, want online with video/primary", st)
	}
}

func TestEngineWallClockJumpMovesNoRenewal(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.clk.JumpWall(3 * time.Hour) // NTP fixes a clock that booted far behind
	h.advance(50 * time.Second)
	h.clk.JumpWall(-5 * time.Hour)
	h.advance(20*time.Second - time.Millisecond)
	if n := h.inflight(); n != 0 {
		t.Fatalf("%d requests before the renewal point after wall jumps, want 0", n)
	}
	h.noEvent()
	h.advance(time.Millisecond)
	h.event(EventWillExpire, "video")
	h.tr.next(t)
}

func TestEngineExpiresThenRecovers(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 40))
	h.event(EventToken, "video")
	h.advance(20 * time.Second) // renewal point: half of 40 s (< 2×renew_before)
	h.event(EventWillExpire, "video")
	// Every retry (backoff 1 s, 2 s, 4 s, 8 s, 8 s …) is answered
	// "unavailable" until the token has expired.
	expired, tries := false, 0
	for !expired {
		h.tr.next(t).fail(wire.CodeUnavailable, 0)
		tries++
		waitFailure(t, h)
		for h.inflight() == 0 {
			h.advance(time.Second)
			select {
			case ev := <-h.events:
				if ev.Kind != EventExpired {
					t.Fatalf("event %s while the issuer is down", ev.Kind)
				}
				expired = true
				if _, ok := h.e.Current("video", h.clk.Now()); ok {
					t.Fatal("expired token handed out as current")
				}
				if st := h.e.Status(h.clk.Now()); st.Tokens[0].State != StateExpired {
					t.Fatalf("state = %s, want expired", st.Tokens[0].State)
				}
			default:
			}
		}
	}
	if tries < 4 {
		t.Fatalf("%d tries in 20 s of backoff 1, 2, 4, 8 s; want at least 4", tries)
	}
	// Retrying goes on; the issuer is back.
	for h.inflight() == 0 {
		h.advance(time.Second)
	}
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 40))
	h.event(EventToken, "video")
	if _, ok := h.e.Current("video", h.clk.Now()); !ok {
		t.Fatal("token not current after recovery")
	}
}

// waitFailure waits until the engine has taken the last reply (each sync
// lets the loop take one more input).
func waitFailure(t *testing.T, h *harness) {
	t.Helper()
	deadline := time.After(waitLimit)
	for h.inflight() != 0 {
		select {
		case <-deadline:
			t.Fatal("engine did not take the reply")
		default:
			h.e.sync()
		}
	}
}

func TestEngineRequestTimeoutAndRateLimit(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	h.tr.next(t) // never answered
	h.advance(10 * time.Second)
	if n := h.inflight(); n != 0 {
		t.Fatalf("request still in flight after request_timeout")
	}
	h.advance(time.Second) // backoff 1 s
	h.tr.next(t).fail(wire.CodeRateLimited, 20)
	waitFailure(t, h)
	h.advance(19 * time.Second)
	if n := h.inflight(); n != 0 {
		t.Fatal("retried before retry_after")
	}
	h.advance(time.Second)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
}

func TestEngineTokensKeepTheirOwnSchedules(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "a", "b"), nil, nil)
	r := h.tr.next(t)
	if len(r.Tokens) != 2 {
		t.Fatalf("first request asks for %v, want [a b]", r.Tokens)
	}
	r.answer(mkGrant(t, "a", "ch", "1", h.wall(), 100), mkGrant(t, "b", "ch", "2", h.wall(), 300))
	h.event(EventToken, "a")
	h.event(EventToken, "b")
	h.advance(70 * time.Second)
	h.event(EventWillExpire, "a")
	r = h.tr.next(t)
	if len(r.Tokens) != 1 || r.Tokens[0] != "a" {
		t.Fatalf("renewal asks for %v, want [a]", r.Tokens)
	}
	r.answer(mkGrant(t, "a", "ch", "1", h.wall(), 100))
	h.event(EventToken, "a")
	for range 2 { // a renews at 140 s and 210 s; b's renewal point is 270 s
		h.advance(70 * time.Second)
		h.event(EventWillExpire, "a")
		h.tr.next(t).answer(mkGrant(t, "a", "ch", "1", h.wall(), 100))
		h.event(EventToken, "a")
	}
	h.advance(60*time.Second - time.Millisecond)
	h.noEvent()
	h.advance(time.Millisecond)
	h.event(EventWillExpire, "b")
	if r := h.tr.next(t); len(r.Tokens) != 1 || r.Tokens[0] != "b" {
		t.Fatalf("renewal asks for %v, want [b]", r.Tokens)
	}
}

func TestEngineRejectsBadReplies(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	other := mkGrant(t, "video", "cam-99", "7", h.wall(), 100)
	other.Channel = "cam-42" // the grant says cam-42, the token is for cam-99
	broken := mkGrant(t, "video", "cam-42", "7", h.wall(), 100)
	broken.Token = broken.Token[:len(broken.Token)-8]
	long := mkGrant(t, "video", "cam-42", "7", h.wall(), 100)
	long.ExpiresAt += 3600 // states a longer life than the token has
	stranger := mkGrant(t, "audio", "cam-42", "7", h.wall(), 100)
	for i, bad := range []wire.Grant{other, broken, long, stranger} {
		h.tr.next(t).answer(bad)
		waitFailure(t, h)
		if _, ok := h.e.Current("video", h.clk.Now()); ok {
			t.Fatalf("bad reply %d handed out", i)
		}
		h.noEvent()
		h.advance(8 * time.Second) // past any backoff
	}
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
}

func TestEnginePushReplacesAtOnce(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	hooks := <-h.tr.hooks
	first := mkGrant(t, "video", "cam-42", "7", h.wall(), 100)
	h.tr.next(t).answer(first)
	h.event(EventToken, "video")
	h.advance(10 * time.Second)
	pushed := mkGrant(t, "video", "cam-42", "7", h.wall(), 100)
	pushed.KID = "secondary" // the issuer rotated its certificate
	hooks.Unsolicited(&wire.Reply{V: 1, ID: "push-1", Tokens: []wire.Grant{pushed}})
	ev := h.event(EventToken, "video")
	if ev.Token.KID != "secondary" {
		t.Fatalf("pushed token kid = %q, want secondary", ev.Token.KID)
	}
	// An older push, or one for an unknown request id, changes nothing.
	hooks.Unsolicited(&wire.Reply{V: 1, ID: "push-2", Tokens: []wire.Grant{first}})
	hooks.Unsolicited(&wire.Reply{V: 1, ID: "r-unknown", Tokens: []wire.Grant{mkGrant(t, "video", "cam-42", "7", h.wall()+1, 100)}})
	h.e.sync()
	h.e.sync()
	h.noEvent()
	if cur, _ := h.e.Current("video", h.clk.Now()); cur.KID != "secondary" {
		t.Fatalf("current kid = %q after stale pushes, want secondary", cur.KID)
	}
	// The push counts from its issue time: renewal 70 s after it.
	h.advance(70*time.Second - time.Millisecond)
	h.noEvent()
	h.advance(time.Millisecond)
	h.event(EventWillExpire, "video")
}

// A rotation push signed in the same second as the token in hand (the
// device had just renewed) still replaces it: the kid tells it is newer.
// A push of the same second with the same kid does not.
func TestEnginePushSameSecondRotation(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	hooks := <-h.tr.hooks
	first := mkGrant(t, "video", "cam-42", "7", h.wall(), 100)
	h.tr.next(t).answer(first)
	h.event(EventToken, "video")
	same := mkGrant(t, "video", "cam-42", "7", h.wall(), 100)
	hooks.Unsolicited(&wire.Reply{V: 1, ID: "push-1", Tokens: []wire.Grant{same}})
	h.e.sync()
	h.noEvent()
	rotated := mkGrant(t, "video", "cam-42", "7", h.wall(), 100)
	rotated.KID = "secondary"
	hooks.Unsolicited(&wire.Reply{V: 1, ID: "push-2", Tokens: []wire.Grant{rotated}})
	if ev := h.event(EventToken, "video"); ev.Token.KID != "secondary" {
		t.Fatalf("pushed token kid = %q, want secondary", ev.Token.KID)
	}
}

func TestEngineRenewCoalesced(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	if err := h.e.Renew("nope"); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("Renew(nope) = %v, want ErrUnknownToken", err)
	}
	for range 3 {
		if err := h.e.Renew("video"); err != nil {
			t.Fatal(err)
		}
	}
	r := h.tr.next(t)
	_ = h.e.Renew("video") // in flight: absorbed
	h.advance(time.Second)
	r.answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	_ = h.e.Renew("video") // within renew_min_interval: absorbed
	h.e.sync()
	if n := h.inflight(); n != 0 {
		t.Fatalf("%d requests after coalesced renews, want 0", n)
	}
	h.advance(10 * time.Second)
	_ = h.e.Renew("video")
	h.tr.next(t)
}

func TestEngineDiscoversGrantedTokens(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir()), nil, nil)
	r := h.tr.next(t)
	if r.Tokens != nil {
		t.Fatalf("discovery request names %v, want none (all granted)", r.Tokens)
	}
	r.answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100), mkGrant(t, "signal", "cam-42", "7", h.wall(), 200))
	h.event(EventToken, "video")
	h.event(EventToken, "signal")
	if st := h.e.Status(h.clk.Now()); len(st.Tokens) != 2 {
		t.Fatalf("status has %d tokens, want 2", len(st.Tokens))
	}
	h.advance(70 * time.Second)
	h.event(EventWillExpire, "video")
	// The renewal names none either: a name the policy granted since
	// (audio) comes with it.
	r = h.tr.next(t)
	if r.Tokens != nil {
		t.Fatalf("renewal asks for %v, want every granted token", r.Tokens)
	}
	r.answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100), mkGrant(t, "signal", "cam-42", "7", h.wall(), 200),
		mkGrant(t, "audio", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.event(EventToken, "signal")
	h.event(EventToken, "audio")
	if _, ok := h.e.Current("audio", h.clk.Now()); !ok {
		t.Fatal("a token granted since discovery is not served after the renewal")
	}
}

// Without a tokens list, a name the issuer leaves out of a reply for every
// granted token is no longer granted: it is reported refused and asked for
// alone, rarely, and the other tokens' schedule is not disturbed.
func TestEngineDiscoveredTokenNoLongerGranted(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir()), nil, nil)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100), mkGrant(t, "signal", "cam-42", "7", h.wall(), 3600))
	h.event(EventToken, "video")
	h.event(EventToken, "signal")
	h.advance(70 * time.Second)
	h.event(EventWillExpire, "video")
	h.tr.next(t).answer(mkGrant(t, "signal", "cam-42", "7", h.wall(), 3600)) // video is gone from the policy
	h.event(EventToken, "signal")
	waitFailure(t, h)
	st := h.e.Status(h.clk.Now())
	if len(st.Refused) != 1 || st.Refused[0].Name != "video" || st.Refused[0].Code != wire.CodeForbidden {
		t.Fatalf("refused = %+v, want video forbidden", st.Refused)
	}
	// No request until the long refusal wait is over, then video alone.
	h.advance(refusedRetry - time.Millisecond)
	if n := h.inflight(); n != 0 {
		t.Fatalf("%d requests during the refusal wait, want 0", n)
	}
	h.advance(time.Millisecond)
	if r := h.tr.next(t); len(r.Tokens) != 1 || r.Tokens[0] != "video" {
		t.Fatalf("request after the refusal wait asks for %v, want [video] alone", r.Tokens)
	}
}

func TestEngineServesPersistedTokenAtOnce(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	boot := &fakeBoot{id: "boot-a", clk: clk, start: clk.Now()}
	h := startHarness(t, testConfig(dir, "video"), clk, boot)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.e.sync()
	path := filepath.Join(dir, "token-video.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("token not persisted: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %04o, want 0600", fi.Mode().Perm())
	}
	h.stop()

	// Same boot, 40 s later: served at once with 60 s left.
	clk.Advance(40 * time.Second)
	h2 := startHarness(t, testConfig(dir, "video"), clk, boot)
	cur, ok := h2.e.Current("video", clk.Now())
	if !ok {
		t.Fatal("persisted token not served at boot")
	}
	if got := cur.ExpiresIn(clk.Now()); got != 60*time.Second {
		t.Fatalf("persisted token expires in %v, want 60s", got)
	}
	if n := len(h2.tr.reqs); n != 0 {
		t.Fatalf("%d requests at boot with a valid persisted token, want 0", n)
	}
	h2.stop()

	// After a reboot with a clock behind the token's issue time: not served.
	boot2 := &fakeBoot{id: "boot-b", clk: clk, start: clk.Now()}
	clk.JumpWall(-time.Hour)
	h3 := startHarness(t, testConfig(dir, "video"), clk, boot2)
	if _, ok := h3.e.Current("video", clk.Now()); ok {
		t.Fatal("token served although the wall clock is before its issue time")
	}
	h3.tr.next(t)
	h3.stop()

	// After a reboot with a sane clock: aged by the wall clock.
	clk.JumpWall(time.Hour)
	h4 := startHarness(t, testConfig(dir, "video"), clk, &fakeBoot{id: "boot-c", clk: clk, start: clk.Now()})
	cur, ok = h4.e.Current("video", clk.Now())
	if !ok || cur.ExpiresIn(clk.Now()) != 60*time.Second {
		t.Fatalf("after reboot: current=%v expires_in=%v, want 60s", ok, cur.ExpiresIn(clk.Now()))
	}
}

func TestEngineMovesCorruptStateAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token-video.json")
	if err := os.WriteFile(path, []byte(`{"v":1,"grant":{"name":"vid`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token-video.json.tmp"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, testConfig(dir, "video"), nil, nil)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.e.sync()
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("corrupt file not moved aside: %v", aside)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("leftover temp file not removed: %v", err)
	}
	if _, err := readSaved(path, "video", os.Geteuid()); err != nil {
		t.Fatalf("fresh token not persisted over the corrupt one: %v", err)
	}
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	e, err := New(testConfig(t.TempDir(), "video"), Deps{Transport: newFakeTransport()})
	if err != nil {
		t.Fatal(err)
	}
	slow, _ := e.Subscribe()
	fast, cancel := e.Subscribe()
	defer cancel()
	e.mu.Lock()
	for i := range subscriberBuffer + 1 {
		e.emit(Event{Kind: EventToken, Name: "video"})
		if i < subscriberBuffer {
			<-fast
		}
	}
	e.mu.Unlock()
	n := 0
	for range slow {
		n++
	}
	if n != subscriberBuffer {
		t.Fatalf("slow subscriber got %d events before being dropped, want %d", n, subscriberBuffer)
	}
	if _, ok := <-fast; !ok {
		t.Fatal("the keeping-up subscriber was dropped")
	}
}

func TestEngineRequestsWaitForTheConnection(t *testing.T) {
	tr := newFakeTransport()
	tr.connected = false
	h := startHarnessOn(t, testConfig(t.TempDir(), "video"), nil, nil, tr)
	hooks := <-tr.hooks
	noRequest := func(when string) {
		t.Helper()
		h.e.sync()
		select {
		case r := <-tr.reqs:
			t.Fatalf("%s: request %s sent while disconnected", when, r.ID)
		default:
		}
		if hl := h.health(); !hl.Failing {
			t.Fatalf("%s: health %+v, want failing while a request waits for the broker", when, hl)
		}
	}
	noRequest("boot")
	h.advance(time.Minute) // no backoff runs: nothing failed
	noRequest("a minute later")

	hooks.Connected()
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.e.sync()
	if hl := h.health(); hl != (Health{}) {
		t.Fatalf("health %+v after the first token, want all clear", hl)
	}

	// Lost before the renewal point: the renewal waits for the broker,
	// and goes out the moment it is back.
	hooks.Disconnected()
	h.advance(70 * time.Second)
	h.event(EventWillExpire, "video")
	noRequest("renewal while disconnected")
	hooks.Connected()
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.e.mu.Lock()
	failures := h.e.slots["video"].failures
	h.e.mu.Unlock()
	if failures != 0 {
		t.Fatalf("%d failures counted for requests held while disconnected, want 0", failures)
	}
}
