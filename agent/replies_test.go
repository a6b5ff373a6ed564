package agent

import (
	"testing"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/wire"
)

// A token whose issued_at is ahead (a replica whose clock runs a day
// fast, or an issuer whose clock was stepped back afterwards) does not
// block the renewals after it: a reply to a later request is newer,
// whatever the issuer's clock says.
func TestEngineRenewsAfterATokenFromAClockAhead(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	ahead := mkGrant(t, "video", "cam-42", "7", h.wall()+86400, 100)
	h.tr.next(t).answer(ahead)
	h.event(EventToken, "video")
	for cycle := range 2 {
		h.advance(70 * time.Second)
		h.event(EventWillExpire, "video")
		h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
		ev := h.event(EventToken, "video")
		if got := ev.Token.ExpiresIn(h.clk.Now()); got != 100*time.Second {
			t.Fatalf("cycle %d: renewed token expires in %v, want 100s", cycle, got)
		}
	}
	// The ahead token, delivered again (a duplicate, or the replica
	// pushing), does not come back.
	hooks := <-h.tr.hooks
	hooks.Unsolicited(&wire.Reply{V: 1, ID: "push-1", Tokens: []wire.Grant{ahead}})
	h.e.sync()
	h.noEvent()
}

// A reply to a request that timed out arrives after the reply to its
// retry: it is older, whatever its issued_at, and does not replace the
// newer token. A duplicate of a reply changes nothing.
func TestEngineLateReplyDoesNotReplaceNewer(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	hooks := <-h.tr.hooks
	first := h.tr.next(t) // never answered in time
	h.advance(10 * time.Second)
	h.advance(time.Second) // backoff
	retry := h.tr.next(t)
	fresh := mkGrant(t, "video", "cam-42", "7", h.wall(), 100)
	retry.answer(fresh)
	h.event(EventToken, "video")
	// The late one was signed later (its issuer's clock is ahead).
	late := mkGrant(t, "video", "cam-42", "7", h.wall()+30, 100)
	hooks.Unsolicited(&wire.Reply{V: 1, ID: first.ID, IssuedAt: late.IssuedAt, Tokens: []wire.Grant{late}})
	hooks.Unsolicited(&wire.Reply{V: 1, ID: retry.ID, IssuedAt: fresh.IssuedAt, Tokens: []wire.Grant{fresh}})
	h.e.sync()
	h.e.sync()
	h.noEvent()
	if cur, _ := h.e.Current("video", h.clk.Now()); cur.Token != fresh.Token {
		t.Fatal("a late reply to an older request replaced the newer token")
	}
}

// A late reply to a request newer than the one behind the current token
// is taken; a late reply carrying a name that request did not ask for is
// not.
func TestEngineLateReplyToNewerRequestTaken(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video", "audio"), nil, nil)
	hooks := <-h.tr.hooks
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100), mkGrant(t, "audio", "cam-42", "7", h.wall(), 300))
	h.event(EventToken, "video")
	h.event(EventToken, "audio")
	h.advance(70 * time.Second)
	h.event(EventWillExpire, "video")
	r := h.tr.next(t) // asks for video only; times out
	h.advance(10 * time.Second)
	newer := mkGrant(t, "video", "cam-42", "7", h.wall()-5, 100)
	stray := mkGrant(t, "audio", "cam-42", "7", h.wall()-5, 300)
	hooks.Unsolicited(&wire.Reply{V: 1, ID: r.ID, IssuedAt: newer.IssuedAt, Tokens: []wire.Grant{newer, stray}})
	if ev := h.event(EventToken, "video"); ev.Token.Token != newer.Token {
		t.Fatal("late reply's token is not the current one")
	}
	h.e.sync()
	h.noEvent()
	if cur, _ := h.e.Current("audio", h.clk.Now()); cur.Token == stray.Token {
		t.Fatal("a late reply's token that was not asked for was taken")
	}
}

// Only pushes the agent can check against what it holds are taken: for
// its own channel and uid, the same service and App ID, replacing a
// token it asked for. Forged replies (unknown id, another channel,
// another App ID, a name it does not hold) change nothing.
func TestEngineRejectsForgedPushes(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video", "audio"), nil, nil)
	hooks := <-h.tr.hooks
	r := h.tr.next(t)
	r.answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.advance(5 * time.Second)
	otherChannel := mkGrant(t, "video", "cam-99", "7", h.wall(), 100)
	otherUID := mkGrant(t, "video", "cam-42", "8", h.wall(), 100)
	otherApp := mkGrantApp(t, "0123456789abcdef0123456789abcdef", "video", "cam-42", "7", h.wall(), 100)
	unheld := mkGrant(t, "audio", "cam-42", "7", h.wall(), 100)
	noKID := mkGrant(t, "video", "cam-42", "7", h.wall(), 100)
	noKID.KID = ""
	for i, g := range []wire.Grant{otherChannel, otherUID, otherApp, unheld, noKID} {
		hooks.Unsolicited(&wire.Reply{V: 1, ID: "push-f", Tokens: []wire.Grant{g}})
		h.e.sync()
		h.noEvent()
		if i < 3 && len(h.logLines("push", "rejected")) != i+1 {
			t.Fatalf("forged push %d not logged as rejected:\n%s", i, h.logs.String())
		}
	}
	hooks.Unsolicited(&wire.Reply{V: 1, ID: "r-forged-1", Tokens: []wire.Grant{mkGrant(t, "video", "cam-42", "7", h.wall(), 100)}})
	h.e.sync()
	h.noEvent()
	if _, ok := h.e.Current("audio", h.clk.Now()); ok {
		t.Fatal("a pushed token for a name never asked for was taken")
	}
	good := mkGrant(t, "video", "cam-42", "7", h.wall(), 100)
	good.KID = "secondary"
	hooks.Unsolicited(&wire.Reply{V: 1, ID: "push-g", Tokens: []wire.Grant{good}})
	if ev := h.event(EventToken, "video"); ev.Token.Token != good.Token {
		t.Fatal("a good push was not taken")
	}
}

// mkGrantApp is mkGrant for another App ID (signed with the test
// certificate: the agent cannot check signatures, only shapes).
func mkGrantApp(t testing.TB, appID, name, channel, uid string, issuedAt, ttl int64) wire.Grant {
	t.Helper()
	b := accesstoken.Builder{AppID: appID, Certificate: testCert, Now: func() time.Time { return time.Unix(issuedAt, 0) }}
	tok, err := b.RTCWithAccount(channel, uid, accesstoken.RolePublisher, uint32(ttl), uint32(ttl))
	if err != nil {
		t.Fatal(err)
	}
	g := mkGrant(t, name, channel, uid, issuedAt, ttl)
	g.Token = tok
	return g
}

func TestNewer(t *testing.T) {
	t0 := time.Now()
	s := time.Second
	cur := held{seq: 5, deadline: t0.Add(100 * s), kid: "primary", token: "A"}
	tests := []struct {
		name string
		cand held
		want bool
	}{
		{"same token", held{seq: 6, deadline: t0.Add(200 * s), kid: "primary", token: "A"}, false},
		{"reply to a later request, shorter life", held{seq: 6, deadline: t0.Add(50 * s), kid: "primary", token: "B"}, true},
		{"reply to an older request", held{seq: 4, deadline: t0.Add(90 * s), kid: "primary", token: "B"}, false},
		{"older request but lasts longer", held{seq: 4, deadline: t0.Add(110 * s), kid: "primary", token: "B"}, true},
		{"push lasting longer", held{deadline: t0.Add(101 * s), kid: "primary", token: "B"}, true},
		{"push ending sooner", held{deadline: t0.Add(99 * s), kid: "secondary", token: "B"}, false},
		{"push, same end, new kid", held{deadline: t0.Add(100 * s), kid: "secondary", token: "B"}, true},
		{"push, same end, same kid", held{deadline: t0.Add(100 * s), kid: "primary", token: "B"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, why := newer(cur, tt.cand); got != tt.want {
				t.Fatalf("newer = %v (%s), want %v", got, why, tt.want)
			}
		})
	}
}

// A late reply to an older request does not move the clock anchor back:
// a push is still aged through the newest reply's issuer time.
func TestEngineLateReplyKeepsTheNewerAnchor(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	hooks := <-h.tr.hooks
	first := h.tr.next(t) // times out
	h.advance(10 * time.Second)
	h.advance(time.Second)
	w2 := h.wall()
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", w2, 100))
	h.event(EventToken, "video")
	// From a replica whose clock is 1000 s behind: older, and dropped.
	behind := mkGrant(t, "video", "cam-42", "7", w2-1000, 100)
	hooks.Unsolicited(&wire.Reply{V: 1, ID: first.ID, IssuedAt: behind.IssuedAt, Tokens: []wire.Grant{behind}})
	h.advance(30 * time.Second)
	push := mkGrant(t, "video", "cam-42", "7", w2+10, 100)
	hooks.Unsolicited(&wire.Reply{V: 1, ID: "push-1", Tokens: []wire.Grant{push}})
	ev := h.event(EventToken, "video")
	if got := ev.Token.ExpiresIn(h.clk.Now()); got != 80*time.Second {
		t.Fatalf("push issued 10 s after the anchor, seen 30 s after it, expires in %v, want 80s", got)
	}
}
