package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"agoratokens/wire"
)

// A refused token (forbidden) is not retried like a timeout: it waits at
// least refusedRetry (reconnections do not cut that short), is said once
// at Error level, and shows in Status, Health and the published status
// until it is granted.
func TestEngineRefusedBacksOffLong(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video"), nil, nil)
	hooks := <-h.tr.hooks
	for round := range 2 {
		h.tr.next(t).fail(wire.CodeForbidden, 0)
		waitFailure(t, h)
		hooks.Connected() // a reconnection does not end the wait
		h.advance(refusedRetry - time.Millisecond)
		if n := len(h.tr.reqs) + h.inflight(); n != 0 {
			t.Fatalf("round %d: a refused token was asked for again within %v", round, refusedRetry)
		}
		st := h.e.Status(h.clk.Now())
		if len(st.Refused) != 1 || st.Refused[0].Name != "video" || st.Refused[0].Code != wire.CodeForbidden {
			t.Fatalf("round %d: status refused = %+v, want video forbidden", round, st.Refused)
		}
		if hl := h.health(); !hl.Refused || hl.Expired {
			t.Fatalf("round %d: health %+v, want refused (and not expired: the token is refused, not late)", round, hl)
		}
		if rs := h.tr.lastStatus().Refused; len(rs) != 1 || rs[0] != (wire.Refusal{Name: "video", Code: wire.CodeForbidden}) {
			t.Fatalf("round %d: published status refused = %+v", round, rs)
		}
		h.advance(time.Millisecond)
	}
	if l := h.logLines("level=ERROR", "refuses"); len(l) != 1 {
		t.Fatalf("%d Error lines for a refusal repeated twice, want 1:\n%s", len(l), h.logs.String())
	}
	if l := h.logLines("level=WARN"); len(l) != 0 {
		t.Fatalf("refusal retried with warnings:\n%s", strings.Join(l, "\n"))
	}
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.e.sync()
	if st := h.e.Status(h.clk.Now()); len(st.Refused) != 0 {
		t.Fatalf("refusal still shown after the token was granted: %+v", st.Refused)
	}
	if rs := h.tr.lastStatus().Refused; len(rs) != 0 {
		t.Fatalf("published status still shows a refusal: %+v", rs)
	}
	if hl := h.health(); hl.Refused {
		t.Fatalf("health %+v after the grant", hl)
	}
}

// tokens: [video, vidoe] — the issuer refuses the whole request for the
// typo. The agent asks for each alone at once, serves video, and reports
// vidoe once as refused, asking for it only rarely after that.
func TestEngineBadNameDoesNotHoldBackTheOthers(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir(), "video", "vidoe"), nil, nil)
	r := h.tr.next(t)
	if len(r.Tokens) != 2 {
		t.Fatalf("first request asks for %v, want both", r.Tokens)
	}
	r.fail(wire.CodeForbidden, 0)
	alone := map[string]*fakeReq{}
	for range 2 {
		r := h.tr.next(t)
		if len(r.Tokens) != 1 {
			t.Fatalf("after the refusal, a request asks for %v, want one name each", r.Tokens)
		}
		alone[r.Tokens[0]] = r
	}
	if alone["video"] == nil || alone["vidoe"] == nil {
		t.Fatalf("requests after the refusal: %v, want video and vidoe alone", alone)
	}
	alone["vidoe"].fail(wire.CodeForbidden, 0)
	alone["video"].answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	waitFailure(t, h)
	for range 3 { // video renews on its own; vidoe is not asked for
		h.advance(70 * time.Second)
		h.event(EventWillExpire, "video")
		r := h.tr.next(t)
		if len(r.Tokens) != 1 || r.Tokens[0] != "video" {
			t.Fatalf("renewal asks for %v, want [video]", r.Tokens)
		}
		r.answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
		h.event(EventToken, "video")
	}
	if hl := h.health(); hl.Expired || !hl.Refused {
		t.Fatalf("health %+v, want refused, not expired (video is served)", hl)
	}
	if l := h.logLines("level=ERROR", "refuses", "token=vidoe"); len(l) != 1 {
		t.Fatalf("want one Error line for vidoe:\n%s", h.logs.String())
	}
	if l := h.logLines("level=ERROR", "token=video "); len(l) != 0 {
		t.Fatalf("video reported refused:\n%s", strings.Join(l, "\n"))
	}
	// After the long wait, vidoe is asked for again, alone.
	h.advance(refusedRetry)
	for {
		r := h.tr.next(t)
		if len(r.Tokens) == 1 && r.Tokens[0] == "vidoe" {
			break
		}
		r.answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	}
}

func TestClassify(t *testing.T) {
	ie := func(code string, retry time.Duration) error {
		return fmt.Errorf("wrapped: %w", &IssuerError{Code: code, Message: "m", RetryAfter: retry})
	}
	tests := []struct {
		name  string
		err   error
		class errClass
		delay time.Duration
	}{
		{"no reply", errNoReply, classRetry, 0},
		{"broker away", errNotConnected, classRetry, 0},
		{"network", errors.New("dial tcp: connection refused"), classRetry, 0},
		{"unavailable", ie(wire.CodeUnavailable, 0), classRetry, 0},
		{"unavailable with retry_after", ie(wire.CodeUnavailable, 5*time.Second), classRetry, 5 * time.Second},
		{"rate limited", ie(wire.CodeRateLimited, 20*time.Second), classThrottled, 20 * time.Second},
		{"forbidden", ie(wire.CodeForbidden, 0), classRefused, refusedRetry},
		{"invalid request", ie(wire.CodeInvalidRequest, 0), classRefused, refusedRetry},
		{"forbidden, longer retry_after", ie(wire.CodeForbidden, time.Hour), classRefused, time.Hour},
		{"unknown code", ie("overloaded", 0), classRetry, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, d := classify(tt.err)
			if c != tt.class || d != tt.delay {
				t.Fatalf("classify = %s, %v; want %s, %v", c, d, tt.class, tt.delay)
			}
		})
	}
}

// A device the policy does not know (no tokens configured: the request
// for every granted token is refused) backs off long and says so; the
// refusal has no token name.
func TestEngineRefusedDevice(t *testing.T) {
	h := startHarness(t, testConfig(t.TempDir()), nil, nil)
	h.tr.next(t).fail(wire.CodeForbidden, 0)
	waitFailure(t, h)
	h.advance(refusedRetry - time.Millisecond)
	if n := len(h.tr.reqs) + h.inflight(); n != 0 {
		t.Fatal("a refused device asked again before the long wait")
	}
	if rs := h.e.Status(h.clk.Now()).Refused; len(rs) != 1 || rs[0].Name != "" || rs[0].Code != wire.CodeForbidden {
		t.Fatalf("status refused = %+v, want the all-granted request refused", rs)
	}
	if rs := h.tr.lastStatus().Refused; len(rs) != 1 || rs[0] != (wire.Refusal{Code: wire.CodeForbidden}) {
		t.Fatalf("published status refused = %+v", rs)
	}
	if l := h.logLines("level=ERROR", "refuses", `token="(all granted)"`); len(l) != 1 {
		t.Fatalf("want one Error line for the refused device:\n%s", h.logs.String())
	}
	h.advance(time.Millisecond)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.e.sync()
	if rs := h.e.Status(h.clk.Now()).Refused; len(rs) != 0 {
		t.Fatalf("refusal still shown after the grant: %+v", rs)
	}
}
