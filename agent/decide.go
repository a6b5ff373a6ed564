package agent

import (
	"errors"
	"fmt"
	"time"

	"agoratokens/wire"
)

// action is what the scheduler decides for one token at one moment.
type action struct {
	// State is how the token stands (missing, valid, renewing, expired).
	State TokenState
	// Request: ask for a fresh token now.
	Request bool
	// WillExpire: the token is within renew_before of expiry (or past
	// half of a short token's life) and no fresh one has come: the moment
	// of the SDK's onTokenPrivilegeWillExpire.
	WillExpire bool
	// Next is when to look at this token again; zero when only an
	// outside event (a reply, a failure) can change the decision.
	Next time.Time
}

// RenewWindow is the part of each token's life in which its renewal
// starts, as fractions of the lifetime: renewal starts at a point drawn
// uniformly in [Start, End), once per token received, so that a fleet
// that got its tokens together does not renew together.
type RenewWindow struct {
	Start, End float64
}

// problem says what is wrong with w ("" if nothing).
func (w RenewWindow) problem() string {
	switch {
	case !(w.Start > 0 && w.Start < 1) || !(w.End > 0 && w.End < 1):
		return fmt.Sprintf("[%v, %v]: both ends must be fractions of the lifetime between 0 and 1 (exclusive)", w.Start, w.End)
	case w.End < w.Start:
		return fmt.Sprintf("[%v, %v]: the end is before the start", w.Start, w.End)
	}
	return ""
}

// latestRenewal is how long after it arrived a token must be renewed by
// (its will-expire point): renewBefore ahead of expiry, but not before
// half of the lifetime, so that a token shorter than twice renewBefore is
// still used before it is renewed.
func latestRenewal(lifetime, renewBefore time.Duration) time.Duration {
	return lifetime - min(renewBefore, lifetime/2)
}

// drawRenewal is the renewal point of a token (how long after it arrived
// its renewal starts), a pure function of a uniform draw u in [0, 1), the
// window, the lifetime, renewBefore, and the token's age when the draw is
// made (0 for a token just received; a persisted token loaded at boot,
// or one whose renewal a broker outage held, is older).
//
// The window is scaled down, keeping its proportions, when it would end
// after latestRenewal (short tokens): renewal never starts later than
// renewBefore ahead of expiry. A token already inside its window draws in
// what is left of it; one already past it draws in the first half of the
// time left before latestRenewal — a fleet whose power came back after a
// long cut spreads its late renewals too, instead of sending them all at
// once.
func drawRenewal(u float64, w RenewWindow, lifetime, renewBefore, age time.Duration) time.Duration {
	latest := latestRenewal(lifetime, renewBefore)
	lo := time.Duration(w.Start * float64(lifetime))
	hi := time.Duration(w.End * float64(lifetime))
	if hi > latest {
		lo = time.Duration(float64(lo) * float64(latest) / float64(hi))
		hi = latest
	}
	switch {
	case age >= latest:
		return age // due now
	case age >= hi:
		lo, hi = age, age+(latest-age)/2
	case age > lo:
		lo = age
	}
	return lo + time.Duration(u*float64(hi-lo))
}

// decide is the renewal decision for one token, a pure function of the
// clock reading now (monotonic), when the current token arrived (zero:
// none yet) and its lifetime as the issuer stated, renewBefore, the
// token's drawn renewal point renewAt (how long after receivedAt renewal
// starts, see drawRenewal; clamped to latestRenewal), and the last failed
// attempt with the backoff to wait after it (zero: none).
//
// All times are readings of the same monotonic clock, so a step of the
// wall clock moves none of them.
func decide(now, receivedAt time.Time, lifetime, renewBefore, renewAt time.Duration, lastAttempt time.Time, backoff time.Duration) action {
	var a action
	var deadline, warnAt time.Time
	switch {
	case receivedAt.IsZero():
		a.State = StateMissing
	default:
		deadline = receivedAt.Add(lifetime)
		latest := latestRenewal(lifetime, renewBefore)
		warnAt = receivedAt.Add(latest)
		start := receivedAt.Add(max(0, min(renewAt, latest)))
		switch {
		case !now.Before(deadline):
			a.State = StateExpired
		case !now.Before(start):
			a.State = StateRenewing
			a.WillExpire = !now.Before(warnAt)
		default:
			a.State = StateValid
			a.Next = start
			return a
		}
	}
	// Due: request now, unless a failed attempt's backoff still runs.
	retryAt := now
	if !lastAttempt.IsZero() {
		if t := lastAttempt.Add(backoff); t.After(now) {
			retryAt = t
		}
	}
	if retryAt.Equal(now) {
		a.Request = true
	} else {
		a.Next = retryAt
	}
	// A renewing token still has its will-expire point and its expiry to
	// report.
	if a.State == StateRenewing {
		for _, t := range []time.Time{warnAt, deadline} {
			if t.After(now) && (a.Next.IsZero() || t.Before(a.Next)) {
				a.Next = t
			}
		}
	}
	return a
}

// held describes a token for newer: the current one or one offered.
type held struct {
	// seq is the engine's request the token answered; for a push, 0 as
	// an offer, and once held the last request sent when it came (no
	// request sent before it is known to be newer).
	seq uint64
	// deadline is when the token stops working on the monotonic clock.
	deadline time.Time
	kid      string
	token    string
}

// newer decides whether cand should replace cur, by what the agent can
// trust: the order of its own requests, then the expiry on its own
// clock. The issuer's issued_at is not compared: a replica whose clock
// runs ahead (or an issuer clock stepped back) would otherwise have its
// token block every later renewal until it ran out. It says why not.
func newer(cur, cand held) (bool, string) {
	switch {
	case cand.token == cur.token:
		return false, "the same token"
	case cand.seq > cur.seq:
		return true, "" // answers a later request
	case cand.deadline.After(cur.deadline):
		return true, "" // lasts longer
	// issued_at and expires_at have one-second steps: a push ending in
	// the same second as the token held is newer only if a certificate
	// rotation (a new kid) is why it was sent.
	case cand.deadline.Equal(cur.deadline) && cand.kid != cur.kid:
		return true, ""
	}
	return false, "answers an older request and ends no later"
}

// errClass is what a failed request means for the next one.
type errClass int

const (
	// classRetry: a passing failure (no reply, the broker away, the
	// issuer unavailable): retry after the backoff.
	classRetry errClass = iota
	// classThrottled: the issuer asked to wait (rate_limited): retry
	// after the backoff, and no sooner than retry_after.
	classThrottled
	// classRefused: the issuer will not grant it (forbidden,
	// invalid_request): asking again soon cannot help until the policy or
	// the config changes.
	classRefused
)

func (c errClass) String() string {
	return [...]string{"retry", "throttled", "refused"}[c]
}

// refusedRetry is the least wait after a refusal (the engine waits at
// least backoff.max too): long, so a device the policy does not know
// costs the issuer little, but not forever, so fixing the policy brings
// the fleet back without a restart.
const refusedRetry = 15 * time.Minute

// classify decides, where the error is known, what a failed request means
// (SPIRE's retry/fatal split): its class, and the least wait before the
// next attempt (0: the backoff alone decides).
func classify(err error) (errClass, time.Duration) {
	var ie *IssuerError
	if !errors.As(err, &ie) {
		return classRetry, 0
	}
	switch ie.Code {
	case wire.CodeForbidden, wire.CodeInvalidRequest:
		return classRefused, max(refusedRetry, ie.RetryAfter)
	case wire.CodeRateLimited:
		return classThrottled, ie.RetryAfter
	}
	return classRetry, ie.RetryAfter // unavailable, or a code this agent does not know
}
