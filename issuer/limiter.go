package issuer

import (
	"math"
	"sync"
	"time"
)

// bucket is one device's token bucket.
type bucket struct {
	tokens float64
	last   time.Time
	// quiet is when the device may next be told it is rate limited:
	// under a flood only the first refused request of each retry window
	// is answered, the rest are shed without a reply.
	quiet time.Time
}

// take decides one request at now for a bucket of burst tokens refilled
// at perMinute a minute: whether it may go ahead, and if not, how long
// until it could. It is a pure function of its inputs.
func take(b bucket, now time.Time, perMinute, burst int) (next bucket, ok bool, retryAfter time.Duration) {
	rate := float64(perMinute) / 60 // tokens per second
	b = refill(b, now, perMinute, burst)
	if b.tokens >= 1 {
		b.tokens--
		return b, true, 0
	}
	if rate <= 0 {
		return b, false, time.Hour
	}
	wait := time.Duration((1 - b.tokens) / rate * float64(time.Second))
	return b, false, wait
}

// refill adds the tokens earned since the bucket's last use; a new
// bucket starts full.
func refill(b bucket, now time.Time, perMinute, burst int) bucket {
	if b.last.IsZero() {
		return bucket{tokens: float64(burst), last: now}
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(float64(burst), b.tokens+el*float64(perMinute)/60)
		b.last = now
	}
	return b
}

// limiter keeps a token bucket per device. Buckets that have refilled are
// forgotten, so memory follows the devices active in the last few
// minutes, not the fleet.
type limiter struct {
	mu        sync.Mutex
	perMinute int
	burst     int
	buckets   map[string]bucket
	swept     time.Time
}

func newLimiter(perMinute, burst int) *limiter {
	return &limiter{perMinute: perMinute, burst: burst, buckets: map[string]bucket{}}
}

// setRate changes the limits (on reload); existing buckets keep their
// level.
func (l *limiter) setRate(perMinute, burst int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.perMinute, l.burst = perMinute, burst
}

// allow takes a token from device's bucket at now.
func (l *limiter) allow(device string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok, wait := take(l.buckets[device], now, l.perMinute, l.burst)
	l.buckets[device] = b
	if now.Sub(l.swept) > time.Minute {
		l.sweep(now)
	}
	return ok, wait
}

// admit decides one MQTT request of device at now, before any work is
// spent on it. When it is refused, tell says whether to answer it: true
// for the first refusal of each retry window, false for the repeats.
func (l *limiter) admit(device string, now time.Time) (ok bool, wait time.Duration, tell bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok, wait := take(l.buckets[device], now, l.perMinute, l.burst)
	if !ok && !now.Before(b.quiet) {
		tell = true
		b.quiet = now.Add(wait)
	}
	l.buckets[device] = b
	if now.Sub(l.swept) > time.Minute {
		l.sweep(now)
	}
	return ok, wait, tell
}

// sweep forgets buckets that are full again: they hold no information.
func (l *limiter) sweep(now time.Time) {
	l.swept = now
	for d, b := range l.buckets {
		if refill(b, now, l.perMinute, l.burst).tokens >= float64(l.burst) && !now.Before(b.quiet) {
			delete(l.buckets, d)
		}
	}
}

// size returns how many devices the limiter tracks.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
