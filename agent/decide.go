package agent

import (
	"errors"
	"time"

	"agoratokens/wire"
)

// action is what the scheduler decides for one token at one moment.
type action struct {
	// State is how the token stands (missing, valid, renewing, expired).
	State TokenState
	// Request: ask for a fresh token now.
	Request bool
	// Next is when to look at this token again; zero when only an
	// outside event (a reply, a failure) can change the decision.
	Next time.Time
}

// renewPoint is when renewal of a token received at receivedAt with the
// given lifetime starts: renewBefore ahead of expiry, but never before
// half of the lifetime has passed, so that a token shorter than twice
// renewBefore is still used before it is renewed.
func renewPoint(receivedAt time.Time, lifetime, renewBefore time.Duration) time.Time {
	lead := renewBefore
	if lead > lifetime/2 {
		lead = lifetime / 2
	}
	return receivedAt.Add(lifetime - lead)
}

// decide is the renewal decision for one token, a pure function of the
// clock reading now (monotonic), when the current token arrived (zero:
// none yet) and its lifetime as the issuer stated, renewBefore, and the
// last failed attempt with the backoff to wait after it (zero: none).
//
// All times are readings of the same monotonic clock, so a step of the
// wall clock moves none of them.
func decide(now, receivedAt time.Time, lifetime, renewBefore time.Duration, lastAttempt time.Time, backoff time.Duration) action {
	var a action
	var deadline time.Time
	switch {
	case receivedAt.IsZero():
		a.State = StateMissing
	default:
		deadline = receivedAt.Add(lifetime)
		renewAt := renewPoint(receivedAt, lifetime, renewBefore)
		switch {
		case !now.Before(deadline):
			a.State = StateExpired
		case !now.Before(renewAt):
			a.State = StateRenewing
		default:
			a.State = StateValid
			a.Next = renewAt
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
	// A renewing token still has its expiry to report.
	if a.State == StateRenewing && (a.Next.IsZero() || deadline.Before(a.Next)) {
		a.Next = deadline
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
