package socket

import (
	"time"

	"agoratokens/agent"
)

// MaxLine is the longest request line the server reads, in bytes, not
// counting the newline. A longer line gets a line_too_long error and the
// connection is closed.
const MaxLine = 64 << 10

// Ops a client may send.
const (
	OpGet    = "get"
	OpWatch  = "watch"
	OpStatus = "status"
	OpRenew  = "renew"
)

// Events the server sends. token, will_expire and expired mirror
// agent.EventKind; the others answer requests.
const (
	EventToken      = string(agent.EventToken)
	EventWillExpire = string(agent.EventWillExpire)
	EventExpired    = string(agent.EventExpired)
	EventTokens     = "tokens"   // reply to get without a name
	EventWatching   = "watching" // reply to watch, before the current tokens
	EventStatus     = "status"
	EventRenewing   = "renewing"
	EventError      = "error"
)

// Error codes, stable: clients switch on them.
const (
	CodeNotFound       = "not_found"
	CodeBadRequest     = "bad_request"
	CodeForbidden      = "forbidden"
	CodeTooManyClients = "too_many_clients"
	CodeLineTooLong    = "line_too_long"
	CodeUnavailable    = "unavailable"
)

// Request is one line a client sends.
type Request struct {
	Op string `json:"op"`
	// ID, when set, is echoed in the reply so a client can match replies
	// to requests on a connection that also carries watch events.
	ID    string   `json:"id,omitempty"`
	Name  string   `json:"name,omitempty"`
	Names []string `json:"names,omitempty"`
}

// Message is every line the server sends; Event says which fields are
// set. Clients decode every line into it.
type Message struct {
	Event string `json:"event,omitempty"`
	// ID echoes the request's id on a reply; pushed events have none.
	ID string `json:"id,omitempty"`

	// Token fields (token events, the entries of a tokens reply, and
	// name/kid/expires_at/expires_in for will_expire and expired).
	Name string `json:"name,omitempty"`
	// State is a token's state in a status reply: valid, renewing,
	// expired or missing.
	State   string `json:"state,omitempty"`
	Service string `json:"service,omitempty"`
	Channel string `json:"channel,omitempty"`
	User    string `json:"user,omitempty"`
	UID     string `json:"uid,omitempty"`
	Role    string `json:"role,omitempty"`
	Token   string `json:"token,omitempty"`
	// ExpiresAt is the token's expiry in Unix seconds on the issuer's
	// clock (the board's own clock may be wrong; trust ExpiresIn).
	ExpiresAt int64 `json:"expires_at,omitempty"`
	// ExpiresIn is the seconds the token stays valid, rounded up,
	// counted on the agent's monotonic clock when the line was written.
	ExpiresIn *int64 `json:"expires_in,omitempty"`
	KID       string `json:"kid,omitempty"`

	// Status reply.
	Device string `json:"device,omitempty"`
	Broker string `json:"broker,omitempty"`
	// Storage says why tokens are served from memory only (not
	// persisted); absent while they are persisted.
	Storage string `json:"storage,omitempty"`
	// Refused lists the tokens the issuer refuses (name, code, message).
	Refused []Message `json:"refused,omitempty"`

	// Tokens holds the entries of a tokens reply (get without a name)
	// and of a status reply (name, state, kid, expires_at, expires_in;
	// never the token itself).
	Tokens []Message `json:"tokens,omitempty"`
	// Names is the reply to watch: the names being watched (absent: all).
	Names []string `json:"names,omitempty"`

	// Error reply.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// seconds rounds d up to whole seconds, so a token with any time left
// never reads as 0.
func seconds(d time.Duration) *int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return &s
}

// tokenMessage is the token event for t at now.
func tokenMessage(t agent.Token, now time.Time) Message {
	return Message{
		Event:     EventToken,
		Name:      t.Name,
		Service:   t.Service,
		Channel:   t.Channel,
		User:      t.User,
		UID:       t.UID,
		Role:      t.Role,
		Token:     t.Token,
		ExpiresAt: t.ExpiresAt,
		ExpiresIn: seconds(t.ExpiresIn(now)),
		KID:       t.KID,
	}
}

// eventMessage is the line for an engine event at now.
func eventMessage(ev agent.Event, now time.Time) Message {
	switch ev.Kind {
	case agent.EventToken:
		m := tokenMessage(ev.Token, now)
		m.Name = ev.Name
		return m
	case agent.EventWillExpire:
		return Message{Event: EventWillExpire, Name: ev.Name, KID: ev.Token.KID,
			ExpiresAt: ev.Token.ExpiresAt, ExpiresIn: seconds(max(ev.Token.ExpiresIn(now), 0))}
	default:
		return Message{Event: string(ev.Kind), Name: ev.Name, KID: ev.Token.KID,
			ExpiresAt: ev.Token.ExpiresAt}
	}
}

// statusMessage is the reply to status at now.
func statusMessage(st agent.Status, now time.Time) Message {
	m := Message{Event: EventStatus, Device: st.Device, Broker: st.Broker, Storage: st.StateError,
		Tokens: make([]Message, 0, len(st.Tokens))}
	for _, r := range st.Refused {
		m.Refused = append(m.Refused, Message{Name: r.Name, Code: r.Code, Message: r.Message})
	}
	for _, ts := range st.Tokens {
		e := Message{Name: ts.Name, State: string(ts.State)}
		if ts.State != agent.StateMissing {
			e.KID = ts.Token.KID
			e.ExpiresAt = ts.Token.ExpiresAt
			e.ExpiresIn = seconds(ts.Token.ExpiresIn(now))
		}
		m.Tokens = append(m.Tokens, e)
	}
	return m
}

// errorMessage is an error reply.
func errorMessage(id, code, msg string) Message {
	return Message{Event: EventError, ID: id, Code: code, Message: msg}
}
