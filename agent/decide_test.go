package agent

import (
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
		lastAttempt time.Time
		backoff     time.Duration
		want        action
	}{
		{"missing, never tried", t0, zero, 0, zero, 0,
			action{State: StateMissing, Request: true}},
		{"missing, backing off", t0.Add(2 * s), zero, 0, t0, 5 * s,
			action{State: StateMissing, Next: t0.Add(5 * s)}},
		{"missing, backoff over", t0.Add(5 * s), zero, 0, t0, 5 * s,
			action{State: StateMissing, Request: true}},
		{"fresh token waits for its renewal point", t0, t0, life, zero, 0,
			action{State: StateValid, Next: t0.Add(70 * s)}},
		{"one tick before the renewal point", t0.Add(70*s - 1), t0, life, zero, 0,
			action{State: StateValid, Next: t0.Add(70 * s)}},
		{"at renewal point: renew", t0.Add(70 * s), t0, life, zero, 0,
			action{State: StateRenewing, Request: true, Next: t0.Add(100 * s)}},
		{"renewing, backing off: wake at retry", t0.Add(75 * s), t0, life, t0.Add(72 * s), 8 * s,
			action{State: StateRenewing, Next: t0.Add(80 * s)}},
		{"renewing, backoff beyond expiry: wake at expiry", t0.Add(95 * s), t0, life, t0.Add(90 * s), 60 * s,
			action{State: StateRenewing, Next: t0.Add(100 * s)}},
		{"at expiry with no fresh token: expired, retry", t0.Add(100 * s), t0, life, zero, 0,
			action{State: StateExpired, Request: true}},
		{"expired, backing off", t0.Add(101 * s), t0, life, t0.Add(100 * s), 4 * s,
			action{State: StateExpired, Next: t0.Add(104 * s)}},
		{"short token renews at half life", t0.Add(5 * s), t0, 10 * s, zero, 0,
			action{State: StateRenewing, Request: true, Next: t0.Add(10 * s)}},
		{"short token valid before half life", t0.Add(4 * s), t0, 10 * s, zero, 0,
			action{State: StateValid, Next: t0.Add(5 * s)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decide(tt.now, tt.received, tt.lifetime, before, tt.lastAttempt, tt.backoff)
			if got.State != tt.want.State || got.Request != tt.want.Request || !got.Next.Equal(tt.want.Next) {
				t.Fatalf("decide = {%s request=%v next=+%v}, want {%s request=%v next=+%v}",
					got.State, got.Request, rel(t0, got.Next), tt.want.State, tt.want.Request, rel(t0, tt.want.Next))
			}
		})
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
