package agent

import (
	"testing"
	"time"

	"agoratokens/clock"
)

// The wall clock jumping a day forward, then back past the true time
// (NTP fixing a board, or breaking it), moves no renewal and throws no
// token away early — not in the running engine, not in a restart within
// the same boot (aged by the boot clock, not the wall).
func TestEngineWallClockDayJumps(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	boot := &fakeBoot{id: "boot-a", clk: clk, start: clk.Now()}
	h := startHarness(t, testConfig(dir, "video"), clk, boot)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")

	clk.JumpWall(24 * time.Hour)
	h.advance(70*time.Second - time.Millisecond)
	h.noEvent()
	if n := h.inflight(); n != 0 {
		t.Fatalf("%d requests before the renewal point after the wall jumped a day ahead", n)
	}
	if _, ok := h.e.Current("video", clk.Now()); !ok {
		t.Fatal("token thrown away after the wall jumped a day ahead")
	}
	h.advance(time.Millisecond)
	h.event(EventWillExpire, "video")
	// The issuer's clock is right; the board's is a day ahead.
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall()-86400, 100))
	h.event(EventToken, "video")

	clk.JumpWall(-48 * time.Hour) // now a day behind
	h.advance(70*time.Second - time.Millisecond)
	h.noEvent()
	if cur, ok := h.e.Current("video", clk.Now()); !ok || cur.ExpiresIn(clk.Now()) != 30*time.Second+time.Millisecond {
		t.Fatalf("after the wall jumped back: current=%v, want the token with 30.001s left", ok)
	}
	h.stop()

	// Restart in the same boot: the token persisted with a wall clock a
	// day ahead is served for exactly what is left.
	h2 := startHarness(t, testConfig(dir, "video"), clk, boot)
	cur, ok := h2.e.Current("video", clk.Now())
	if !ok || cur.ExpiresIn(clk.Now()) != 30*time.Second+time.Millisecond {
		t.Fatalf("after restart: current=%v expires_in=%v, want 30.001s", ok, cur.ExpiresIn(clk.Now()))
	}
	h2.advance(time.Millisecond)
	h2.event(EventWillExpire, "video")
}
