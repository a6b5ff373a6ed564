package faults

import (
	"strings"
	"testing"
	"time"

	"agoratokens/accesstoken"
)

// The checker decides whether every scenario passes, so it is tested on
// its own with made-up records: each case could only pass if the checker
// sees what it must.

var t0 = time.Unix(1_800_000_000, 0)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func up(s float64, comp string) change {
	return change{At: at(s), Comp: comp, Up: true, Note: comp + " up"}
}
func down(s float64, comp string) change { return change{At: at(s), Comp: comp, Note: comp + " down"} }

// allUp is a timeline where everything dev-1 depends on is up from 0 s.
func allUp(extra ...change) []change {
	cs := []change{up(0, compIssuer), up(0, compBroker), up(0, agentComp("dev-1")), up(0, pathComp("dev-1"))}
	return append(cs, extra...)
}

// tok is a token line for name at s seconds, expiring exp seconds later.
func tok(s float64, name string, exp float64, conn int) watchLine {
	return watchLine{At: at(s), Conn: conn, Event: "token", Name: name, Token: name + at(s).String(), ExpiresAt: at(s + exp).Unix()}
}

func TestChecked(t *testing.T) {
	comps := requiredComps("dev-1")
	for _, tc := range []struct {
		name    string
		changes []change
		want    []interval
	}{
		{"all up from the start: checked after the grace", allUp(), []interval{{at(10), at(100)}}},
		{"broker down 30-40: unchecked until 50", allUp(down(30, compBroker), up(40, compBroker)),
			[]interval{{at(10), at(30)}, {at(50), at(100)}}},
		{"a reset at 60 restarts the grace", allUp(change{At: at(60), Comp: pathComp("dev-1")}, change{At: at(60), Comp: pathComp("dev-1"), Up: true}),
			[]interval{{at(10), at(60)}, {at(70), at(100)}}},
		{"overlapping outages of two parts", allUp(down(20, compIssuer), down(25, agentComp("dev-1")), up(30, compIssuer), up(32, agentComp("dev-1"))),
			[]interval{{at(10), at(20)}, {at(42), at(100)}}},
		{"never up: never checked", []change{up(0, compIssuer)}, nil},
		{"down to the end", allUp(down(95, compIssuer)), []interval{{at(10), at(95)}}},
		{"another device's path does not count", allUp(down(30, pathComp("dev-2"))), []interval{{at(10), at(100)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checked(tc.changes, comps, 10*time.Second, at(0), at(100))
			if len(got) != len(tc.want) {
				t.Fatalf("checked = %v, want %v", got, tc.want)
			}
			for i := range got {
				if !got[i].From.Equal(tc.want[i].From) || !got[i].To.Equal(tc.want[i].To) {
					t.Fatalf("checked = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestJudge(t *testing.T) {
	// A well-renewed token: 12 s tokens every 6 s from 1 s on.
	renewed := func(until float64) []watchLine {
		rec := []watchLine{{At: at(0.5), Conn: 1, Event: "watching"}}
		for s := 1.0; s < until; s += 6 {
			rec = append(rec, tok(s, "video", 12, 1))
		}
		return rec
	}
	for _, tc := range []struct {
		name     string
		changes  []change
		rec      []watchLine
		log      []logLine
		gaps     time.Duration
		problems []string
	}{
		{name: "renewed in time", changes: allUp(), rec: renewed(100)},
		{name: "renewals stop at 49: the token ends at 61, a gap to the end",
			changes: allUp(), rec: append(renewed(50), watchLine{At: at(61.5), Conn: 1, Event: "expired", Name: "video"}),
			gaps: 39 * time.Second},
		{name: "the same stop while the issuer is down is no gap",
			changes: allUp(down(48, compIssuer)), rec: append(renewed(50), watchLine{At: at(61.5), Conn: 1, Event: "expired", Name: "video"})},
		{name: "the agent never says expired",
			changes: allUp(down(48, compIssuer)), rec: renewed(50), problems: []string{"held an expired token for 39.0s"}},
		{name: "the agent says expired 3 s late",
			changes: allUp(down(48, compIssuer)), rec: append(renewed(50), watchLine{At: at(64), Conn: 1, Event: "expired", Name: "video"}),
			problems: []string{"held an expired token for 3.0s"}},
		{name: "no token at all: gap after the boot grace", changes: allUp(), gaps: 90 * time.Second},
		{name: "held 5 s past expires_at while the agent runs",
			changes:  allUp(down(5, compIssuer)),
			rec:      []watchLine{tok(1, "video", 12, 1), {At: at(18), Conn: 1, Event: "expired", Name: "video"}},
			problems: []string{"held an expired token for 5.0s"}},
		{name: "held past expires_at while the agent is down is no problem",
			changes: allUp(down(5, compIssuer), down(10, agentComp("dev-1"))),
			rec:     []watchLine{tok(1, "video", 12, 1)}},
		{name: "a token sent twice on one connection",
			changes: allUp(), rec: func() []watchLine { r := renewed(100); return append(r[:3], append([]watchLine{r[2]}, r[3:]...)...) }(),
			problems: []string{"sent twice"}},
		{name: "the same token again on a new connection is fine",
			changes: allUp(), rec: func() []watchLine {
				r := renewed(100)
				again := r[2]
				again.Conn = 2
				return append(r[:3], append([]watchLine{{At: r[2].At, Conn: 1, Event: evDisconnected}, {At: r[2].At, Conn: 2, Event: "watching"}, again}, r[3:]...)...)
			}()},
		{name: "a token the agent got but never passed on",
			changes: allUp(), rec: renewed(100),
			log:      []logLine{{At: at(50), Msg: "new token", Attrs: map[string]string{"token": "video", "expires_at": "1"}}},
			problems: []string{"never received"}},
		{name: "a token superseded while nobody watched is excused",
			changes: allUp(), rec: []watchLine{tok(1, "video", 120, 1), {At: at(2), Conn: 1, Event: evDisconnected}},
			log: []logLine{
				{At: at(3), Msg: "new token", Attrs: map[string]string{"token": "video", "expires_at": "1"}},
				{At: at(4), Msg: "new token", Attrs: map[string]string{"token": "video", "expires_at": "2"}},
			}},
		{name: "a line that is not JSON", changes: allUp(), rec: append(renewed(100), watchLine{At: at(3), Event: "unparsable", Message: "bad"}),
			problems: []string{"not JSON"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := judge(judgeInput{Start: at(0), End: at(100), Grace: 10 * time.Second, Changes: tc.changes,
				Cameras: []camera{{Device: "dev-1", Names: []string{"video"}, Record: tc.rec, Log: tc.log}}})
			if v.GapTotal != tc.gaps {
				t.Errorf("gap total %v, want %v\n%s", v.GapTotal, tc.gaps, v.summary(at(0)))
			}
			if len(v.Problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %d matching %q", v.Problems, len(tc.problems), tc.problems)
			}
			for i, p := range tc.problems {
				if !strings.Contains(v.Problems[i], p) {
					t.Errorf("problem %q does not say %q", v.Problems[i], p)
				}
			}
			if v.ok() != (tc.gaps == 0 && len(tc.problems) == 0) {
				t.Errorf("ok() = %v", v.ok())
			}
		})
	}
}

func TestJudgeVerifiesTokens(t *testing.T) {
	cert, other := strings.Repeat("ab", 16), strings.Repeat("cd", 16)
	b := accesstoken.Builder{AppID: strings.Repeat("12", 16), Certificate: cert, Now: func() time.Time { return at(1) }}
	good, err := b.RTM("dev-1", "", 12)
	if err != nil {
		t.Fatal(err)
	}
	line := func(token string, expiresIn int64) watchLine {
		return watchLine{At: at(1), Conn: 1, Event: "token", Name: "signal", Token: token, ExpiresAt: at(1).Unix() + expiresIn}
	}
	for _, tc := range []struct {
		name  string
		l     watchLine
		certs []string
		want  string
	}{
		{"good", line(good, 12), []string{cert}, ""},
		{"signed with another certificate", line(good, 12), []string{other}, "signature"},
		{"states a longer life than the token has", line(good, 20), []string{cert}, "after the token's own expiry"},
		{"not a token", line("007garbage", 12), []string{cert}, "not an AccessToken2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verifyToken(tc.l, tc.certs)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestParseLog(t *testing.T) {
	text := "=== dev-1 run 1\n" +
		`time=2026-12-01T21:33:38.123Z level=INFO msg="new token" token=video kid=primary expires_at=1763803600 lifetime_s=12` + "\n" +
		`time=2026-12-01T21:33:39.5Z level=WARN msg="lost the broker; reconnecting" err="EOF \"x\""` + "\n"
	got := parseLog(text)
	if len(got) != 2 {
		t.Fatalf("parsed %d lines, want 2: %+v", len(got), got)
	}
	if got[0].Msg != "new token" || got[0].Attrs["token"] != "video" || got[0].Attrs["expires_at"] != "1763803600" || got[0].At.Nanosecond() != 123e6 {
		t.Errorf("first line parsed as %+v", got[0])
	}
	if got[1].Level != "WARN" || got[1].Attrs["err"] != `EOF "x"` {
		t.Errorf("second line parsed as %+v", got[1])
	}
}
