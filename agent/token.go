package agent

import (
	"time"

	"agoratokens/wire"
)

// Token is a token the agent holds: the grant as the issuer sent it, and
// when it arrived on this device's monotonic clock.
type Token struct {
	wire.Grant
	// ReceivedAt is the local clock reading (with its monotonic part)
	// when the reply carrying the token arrived. Expiry is counted from
	// here, never from the wall clock.
	ReceivedAt time.Time
}

// Deadline is when the token stops working, on the local monotonic clock:
// ReceivedAt plus the lifetime the issuer stated.
func (t *Token) Deadline() time.Time {
	return t.ReceivedAt.Add(time.Duration(t.Lifetime()) * time.Second)
}

// ExpiresIn is how long the token stays valid after now (≤ 0: expired).
func (t *Token) ExpiresIn(now time.Time) time.Duration {
	return t.Deadline().Sub(now)
}

// Valid reports whether the token may still be handed out at now.
func (t *Token) Valid(now time.Time) bool { return t.ExpiresIn(now) > 0 }

// EventKind names an event the agent emits about a token.
type EventKind string

// Events, as the socket protocol names them.
const (
	// EventToken: a new token (first one, renewal or push) is current.
	EventToken EventKind = "token"
	// EventWillExpire: the current token expires within renew_before
	// (or is past half of a token shorter than twice that) and no fresh
	// one has come: renewal, started earlier in renew_window, has not
	// succeeded yet (like the SDK's onTokenPrivilegeWillExpire). A device
	// whose renewals succeed never sees it.
	EventWillExpire EventKind = "will_expire"
	// EventExpired: the token expired before a fresh one arrived (like
	// the SDK's onRequestToken); renewal goes on.
	EventExpired EventKind = "expired"
)

// Event is one thing that happened to a named token. Events for one name
// are delivered in the order they happened.
type Event struct {
	Kind EventKind
	Name string
	// Token is the new token for EventToken, the current (expiring or
	// expired) one otherwise.
	Token Token
	// At is the local clock reading when the event happened.
	At time.Time
}

// TokenState is how a token stands, for the status op.
type TokenState string

// Token states.
const (
	StateValid    TokenState = "valid"
	StateRenewing TokenState = "renewing" // valid, past its renewal point; renewal under way
	StateExpired  TokenState = "expired"
	StateMissing  TokenState = "missing" // wanted, never received
)

// TokenStatus is one token in a Status.
type TokenStatus struct {
	Name  string
	State TokenState
	// Token is the current token; its zero value when State is missing.
	Token Token
}

// Status is a snapshot of the agent for the status op.
type Status struct {
	Device string
	// Broker is "connected" or "disconnected" (or the HTTP source's state).
	Broker string
	Tokens []TokenStatus
	// StateError says why tokens are not being persisted (the state
	// directory cannot be created, is read-only or full): they are served
	// from memory, and a restart would fetch them again. Empty while
	// persisting works.
	StateError string
	// Refused lists the tokens the issuer refuses to grant.
	Refused []Refusal
}

// Refusal is a token the issuer refuses (forbidden, invalid_request): it
// is asked for again only rarely, until the policy or config changes.
type Refusal struct {
	// Name is the token name; empty for the request for every granted
	// token (no tokens configured).
	Name string
	// Code and Message are the issuer's error reply (never a secret).
	Code    string
	Message string
}

// Source is what the socket server needs from the agent's engine. The
// engine implements it; tests implement it with fakes.
type Source interface {
	// Status returns the agent's state at now.
	Status(now time.Time) Status
	// Current returns the named token if it is valid at now.
	Current(name string, now time.Time) (Token, bool)
	// Subscribe returns a channel of every event from now on, in order,
	// and a function that ends the subscription. The engine never blocks
	// on a subscriber: buffer events per subscriber and drop (close) a
	// subscriber whose buffer is full.
	Subscribe() (events <-chan Event, cancel func())
	// Renew asks for a fresh token now (the media process saw a token
	// error). It returns ErrUnknownToken for a name the agent does not
	// keep. Calls are coalesced and rate-limited by the engine.
	Renew(name string) error
}

// ErrUnknownToken is returned for a token name the agent does not keep.
var ErrUnknownToken = errUnknownToken{}

type errUnknownToken struct{}

func (errUnknownToken) Error() string { return "unknown token name" }
