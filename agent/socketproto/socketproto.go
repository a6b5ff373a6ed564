// Package socketproto is the agent's Unix-socket protocol as data: the
// request and message types, the op, event and error-code names, and the
// line limit. The server (agent/socket) and the Go client (agent/client)
// share it. It imports only the standard library, so that a media
// process linking the client carries none of the agent's dependencies
// (MQTT, YAML, GPIO). The protocol is written down in docs/socket.md.
package socketproto

// DefaultPath is where the agent listens unless configured otherwise.
const DefaultPath = "/run/agora-token-agent/agent.sock"

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

// Events the server sends. token, will_expire and expired are the
// agent's own events about a token; the others answer requests.
const (
	EventToken      = "token"
	EventWillExpire = "will_expire"
	EventExpired    = "expired"
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
