package agent

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Now() // carries a monotonic reading, as the engine's do
	s := time.Second
	const life, before = 100 * time.Second, 30 * time.Second
	var zero time.Time
	tests := []struct {
		name        string
		now         time.Time
		received    time.Time
		lifetime    time.Duration
		renewAt     time.Duration // the drawn renewal point
		lastAttempt time.Time
		backoff     time.Duration
		want        action
	}{
		{"missing, never tried", t0, zero, 0, 0, zero, 0,
			action{State: StateMissing, Request: true}},
		{"missing, backing off", t0.Add(2 * s), zero, 0, 0, t0, 5 * s,
			action{State: StateMissing, Next: t0.Add(5 * s)}},
		{"missing, backoff over", t0.Add(5 * s), zero, 0, 0, t0, 5 * s,
			action{State: StateMissing, Request: true}},
		{"fresh token waits for its drawn point", t0, t0, life, 62 * s, zero, 0,
			action{State: StateValid, Next: t0.Add(62 * s)}},
		{"one tick before the drawn point", t0.Add(62*s - 1), t0, life, 62 * s, zero, 0,
			action{State: StateValid, Next: t0.Add(62 * s)}},
		{"at the drawn point: renew, wake at the will-expire point", t0.Add(62 * s), t0, life, 62 * s, zero, 0,
			action{State: StateRenewing, Request: true, Next: t0.Add(70 * s)}},
		{"renewing, backing off: wake at retry", t0.Add(63 * s), t0, life, 62 * s, t0.Add(62 * s), 4 * s,
			action{State: StateRenewing, Next: t0.Add(66 * s)}},
		{"renewing, backoff beyond the will-expire point: wake there", t0.Add(65 * s), t0, life, 62 * s, t0.Add(64 * s), 20 * s,
			action{State: StateRenewing, Next: t0.Add(70 * s)}},
		{"no fresh token by renew_before ahead: will expire", t0.Add(70 * s), t0, life, 62 * s, t0.Add(66 * s), 8 * s,
			action{State: StateRenewing, WillExpire: true, Next: t0.Add(74 * s)}},
		{"will expire, backoff beyond expiry: wake at expiry", t0.Add(95 * s), t0, life, 62 * s, t0.Add(90 * s), 60 * s,
			action{State: StateRenewing, WillExpire: true, Next: t0.Add(100 * s)}},
		{"will expire, retry due: request, wake at expiry", t0.Add(80 * s), t0, life, 62 * s, t0.Add(72 * s), 8 * s,
			action{State: StateRenewing, WillExpire: true, Request: true, Next: t0.Add(100 * s)}},
		{"drawn point past renew_before ahead is clamped to it", t0.Add(70 * s), t0, life, 90 * s, zero, 0,
			action{State: StateRenewing, WillExpire: true, Request: true, Next: t0.Add(100 * s)}},
		{"clamped point: valid just before it", t0.Add(70*s - 1), t0, life, 90 * s, zero, 0,
			action{State: StateValid, Next: t0.Add(70 * s)}},
		{"at expiry with no fresh token: expired, retry", t0.Add(100 * s), t0, life, 62 * s, zero, 0,
			action{State: StateExpired, Request: true}},
		{"expired, backing off", t0.Add(101 * s), t0, life, 62 * s, t0.Add(100 * s), 4 * s,
			action{State: StateExpired, Next: t0.Add(104 * s)}},
		// lifetime < 2×renew_before: the will-expire point is half the
		// lifetime, and a drawn point beyond it is clamped there.
		{"short token, drawn point past half life: renews at half life", t0.Add(5 * s), t0, 10 * s, 8 * s, zero, 0,
			action{State: StateRenewing, WillExpire: true, Request: true, Next: t0.Add(10 * s)}},
		{"short token valid before half life", t0.Add(4 * s), t0, 10 * s, 8 * s, zero, 0,
			action{State: StateValid, Next: t0.Add(5 * s)}},
		{"short token, drawn point inside: renews there, will-expire at half life", t0.Add(4 * s), t0, 10 * s, 4 * s, zero, 0,
			action{State: StateRenewing, Request: true, Next: t0.Add(5 * s)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decide(tt.now, tt.received, tt.lifetime, before, tt.renewAt, tt.lastAttempt, tt.backoff)
			if got.State != tt.want.State || got.Request != tt.want.Request || got.WillExpire != tt.want.WillExpire ||
				!got.Next.Equal(tt.want.Next) {
				t.Fatalf("decide = {%s request=%v will_expire=%v next=+%v}, want {%s request=%v will_expire=%v next=+%v}",
					got.State, got.Request, got.WillExpire, rel(t0, got.Next),
					tt.want.State, tt.want.Request, tt.want.WillExpire, rel(t0, tt.want.Next))
			}
		})
	}
}

func TestDrawRenewal(t *testing.T) {
	s := time.Second
	def := RenewWindow{0.6, 0.8}
	tests := []struct {
		name           string
		w              RenewWindow
		life, before   time.Duration
		age            time.Duration
		wantLo, wantHi time.Duration // u = 0 gives wantLo, u → 1 approaches wantHi
	}{
		{"1 h token: 60%..80%", def, time.Hour, 30 * s, 0, 36 * time.Minute, 48 * time.Minute},
		{"200 s token: the window ends before renew_before ahead", def, 200 * s, 30 * s, 0, 120 * s, 160 * s},
		{"window reaching past renew_before ahead is scaled to end there", RenewWindow{0.5, 0.9}, 100 * s, 30 * s, 0,
			time.Duration(0.5 * 70 / 0.9 * float64(s)), 70 * s},
		{"short token: window and renew_before collide", def, 120 * s, 30 * s, 0, 67500 * time.Millisecond, 90 * s},
		{"100 s token: 60%..80% scaled to end at 70 s", def, 100 * s, 30 * s, 0, 52500 * time.Millisecond, 70 * s},
		{"lifetime < 2×renew_before: ends at half life", def, 40 * s, 30 * s, 0, 15 * s, 20 * s},
		{"point window", RenewWindow{0.7, 0.7}, 100 * s, 30 * s, 0, 70 * s, 70 * s},
		{"persisted token inside its window: the rest of it", def, 200 * s, 30 * s, 130 * s, 130 * s, 160 * s},
		{"persisted token before its window: all of it", def, 200 * s, 30 * s, 10 * s, 120 * s, 160 * s},
		{"persisted token past its window: first half of what is left", def, 200 * s, 30 * s, 164 * s, 164 * s, 167 * s},
		{"persisted token past renew_before ahead: now", def, 200 * s, 30 * s, 172 * s, 172 * s, 172 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo := drawRenewal(0, tt.w, tt.life, tt.before, tt.age)
			hi := drawRenewal(math.Nextafter(1, 0), tt.w, tt.life, tt.before, tt.age)
			mid := drawRenewal(0.5, tt.w, tt.life, tt.before, tt.age)
			near := func(a, b time.Duration) bool { return a-b < time.Microsecond && b-a < time.Microsecond }
			if !near(lo, tt.wantLo) || !near(hi, tt.wantHi) {
				t.Fatalf("drawRenewal spans [%v, %v], want [%v, %v]", lo, hi, tt.wantLo, tt.wantHi)
			}
			if !near(mid, (tt.wantLo+tt.wantHi)/2) {
				t.Fatalf("drawRenewal(0.5) = %v, want the middle %v (uniform)", mid, (tt.wantLo+tt.wantHi)/2)
			}
			// Never later than renew_before ahead (or now, for a token
			// already past it).
			if latest := max(latestRenewal(tt.life, tt.before), tt.age); hi > latest {
				t.Fatalf("drawn point %v is past renew_before ahead of expiry (%v)", hi, latest)
			}
		})
	}
}

func TestRenewWindowProblem(t *testing.T) {
	for _, tc := range []struct {
		w    RenewWindow
		want string
	}{
		{RenewWindow{0.6, 0.8}, ""},
		{RenewWindow{0.5, 0.5}, ""},
		{RenewWindow{0, 0.8}, "between 0 and 1"},
		{RenewWindow{0.6, 1}, "between 0 and 1"},
		{RenewWindow{-0.1, 0.8}, "between 0 and 1"},
		{RenewWindow{math.NaN(), 0.8}, "between 0 and 1"},
		{RenewWindow{0.8, 0.6}, "end is before the start"},
	} {
		got := tc.w.problem()
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%v.problem() = %q, want %q", tc.w, got, tc.want)
		}
	}
}

func rel(t0, t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return t.Sub(t0)
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		secs int
		want time.Duration
	}{
		{0, 0},
		{-5, 0},
		{10, 10 * time.Second},
		{3600, time.Hour},
		{1 << 30, time.Hour},
		{int(^uint(0) >> 1), time.Hour},
	} {
		if got := retryAfter(tc.secs); got != tc.want {
			t.Errorf("retryAfter(%d) = %s, want %s", tc.secs, got, tc.want)
		}
	}
}

// Draws from a seeded source, for lifetimes from under 2×renew_before to
// 24 h: decide keeps each token valid until its drawn point, requests
// there, inside the (scaled) window, and shows will_expire only at
// renew_before ahead of expiry.
func TestDrawThenDecide(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	t0 := time.Now()
	const before = 30 * time.Second
	w := RenewWindow{0.6, 0.8}
	for _, life := range []time.Duration{2 * time.Second, 40 * time.Second, 100 * time.Second, 150 * time.Second, time.Hour, 24 * time.Hour} {
		latest := latestRenewal(life, before)
		lo, hi := time.Duration(0.6*float64(life)), time.Duration(0.8*float64(life))
		if hi > latest {
			lo, hi = time.Duration(float64(lo)*float64(latest)/float64(hi)), latest
		}
		for range 1000 {
			at := drawRenewal(rnd.Float64(), w, life, before, 0)
			if at < lo || at >= hi {
				t.Fatalf("life %v: drawn point %v outside [%v, %v)", life, at, lo, hi)
			}
			if a := decide(t0.Add(at-1), t0, life, before, at, time.Time{}, 0); a.State != StateValid || a.Request || !a.Next.Equal(t0.Add(at)) {
				t.Fatalf("life %v: just before the drawn point %v: %+v", life, at, a)
			}
			if a := decide(t0.Add(at), t0, life, before, at, time.Time{}, 0); a.State != StateRenewing || !a.Request || a.WillExpire {
				t.Fatalf("life %v: at the drawn point %v: %+v", life, at, a)
			}
			if a := decide(t0.Add(latest), t0, life, before, at, t0.Add(at), latest); !a.WillExpire || a.State != StateRenewing {
				t.Fatalf("life %v: renewal failed, at renew_before ahead: %+v, want will_expire", life, a)
			}
		}
	}
}
