// Package wire is the MQTT contract between the issuer and its agents:
// topic names and the JSON messages on them. Both sides import it so that
// neither can drift from the other.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// SchemaVersion is the "v" every message carries.
const SchemaVersion = 1

// MaxPayload is the largest message either side accepts, in bytes.
const MaxPayload = 16 << 10

// MaxRequestTokens is the most token names one request may ask for.
const MaxRequestTokens = 32

// DefaultRoot is the default topic root.
const DefaultRoot = "agora/v1"

// Error codes of an error reply. They are stable: agents branch on them.
const (
	CodeForbidden      = "forbidden"
	CodeInvalidRequest = "invalid_request"
	CodeRateLimited    = "rate_limited"
	CodeUnavailable    = "unavailable"
)

// Status states.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// MaxDeviceIDLen is the longest device id.
const MaxDeviceIDLen = 64

// ValidateDeviceID checks a device id: 1–64 of A-Za-z0-9._-
func ValidateDeviceID(id string) error {
	if id == "" {
		return errors.New("device id is empty")
	}
	if len(id) > MaxDeviceIDLen {
		return fmt.Errorf("device id is %d bytes, max %d", len(id), MaxDeviceIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !validIDByte(id[i]) {
			return fmt.Errorf("device id %q: byte %d is not one of A-Za-z0-9._-", id, i+1)
		}
	}
	return nil
}

// ValidateName checks a token name or request id: 1–64 of A-Za-z0-9._-
func ValidateName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > 64 {
		return fmt.Errorf("%s is %d bytes, max 64", what, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !validIDByte(s[i]) {
			return fmt.Errorf("%s %q: byte %d is not one of A-Za-z0-9._-", what, s, i+1)
		}
	}
	return nil
}

func validIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// Topics names the topics under one root.
type Topics struct{ Root string }

// NewTopics returns the topics under root ("" means DefaultRoot). A
// trailing slash is dropped.
func NewTopics(root string) Topics {
	if root == "" {
		root = DefaultRoot
	}
	return Topics{Root: strings.TrimSuffix(root, "/")}
}

// ValidateRoot checks a topic root: non-empty, no wildcards, no leading
// '$' and no empty levels.
func ValidateRoot(root string) error {
	switch {
	case root == "":
		return errors.New("topic root is empty")
	case strings.ContainsAny(root, "+#\x00"):
		return fmt.Errorf("topic root %q contains a wildcard or NUL", root)
	case strings.HasPrefix(root, "$"):
		return fmt.Errorf("topic root %q starts with $", root)
	case strings.HasPrefix(root, "/") || strings.Contains(strings.TrimSuffix(root, "/"), "//"):
		return fmt.Errorf("topic root %q has an empty level", root)
	}
	return nil
}

// Req is the topic a device publishes its requests on.
func (t Topics) Req(device string) string { return t.Root + "/devices/" + device + "/req" }

// Token is the topic the issuer publishes a device's replies on.
func (t Topics) Token(device string) string { return t.Root + "/devices/" + device + "/token" }

// Status is a device's retained status topic.
func (t Topics) Status(device string) string { return t.Root + "/devices/" + device + "/status" }

// IssuerStatus is the issuers' retained status topic.
func (t Topics) IssuerStatus() string { return t.Root + "/issuer/status" }

// AllStatuses is the filter matching every device's status topic.
func (t Topics) AllStatuses() string { return t.Root + "/devices/+/status" }

// Campaign is the issuers' retained rotation campaign topic; only
// issuers may use it.
func (t Topics) Campaign() string { return t.Root + "/issuer/campaign" }

// ReplicaStatus is one issuer replica's own retained status topic.
func (t Topics) ReplicaStatus(issuer string) string { return t.Root + "/issuer/replicas/" + issuer }

// AllReplicas is the filter matching every replica's status topic.
func (t Topics) AllReplicas() string { return t.Root + "/issuer/replicas/+" }

// Marker is a topic an issuer tool publishes on to itself, to learn that
// the messages queued before it (retained ones) have all arrived.
func (t Topics) Marker(id string) string { return t.Root + "/issuer/marker/" + id }

// DeviceFromStatus returns the device id of a status topic, checking
// the topic's shape and the id.
func (t Topics) DeviceFromStatus(topic string) (string, error) {
	prefix := t.Root + "/devices/"
	if !strings.HasPrefix(topic, prefix) || !strings.HasSuffix(topic, "/status") {
		return "", fmt.Errorf("topic %q is not a status topic under %q", topic, t.Root)
	}
	id := topic[len(prefix) : len(topic)-len("/status")]
	if err := ValidateDeviceID(id); err != nil {
		return "", fmt.Errorf("topic %q: %w", topic, err)
	}
	return id, nil
}

// AllReqs is the filter matching every device's request topic.
func (t Topics) AllReqs() string { return t.Root + "/devices/+/req" }

// SharedReqs is AllReqs through the shared subscription group (none when
// group is empty).
func (t Topics) SharedReqs(group string) string {
	if group == "" {
		return t.AllReqs()
	}
	return "$share/" + group + "/" + t.AllReqs()
}

// DeviceFromReq returns the device id of a request topic, checking the
// topic's shape and the id.
func (t Topics) DeviceFromReq(topic string) (string, error) {
	prefix := t.Root + "/devices/"
	if !strings.HasPrefix(topic, prefix) || !strings.HasSuffix(topic, "/req") {
		return "", fmt.Errorf("topic %q is not a request topic under %q", topic, t.Root)
	}
	id := topic[len(prefix) : len(topic)-len("/req")]
	if err := ValidateDeviceID(id); err != nil {
		return "", fmt.Errorf("topic %q: %w", topic, err)
	}
	return id, nil
}

// Request asks the issuer for tokens. No Tokens means all granted.
type Request struct {
	V      int      `json:"v"`
	ID     string   `json:"id"`
	Tokens []string `json:"tokens,omitempty"`
}

// Grant is one token in a reply.
type Grant struct {
	Name      string `json:"name"`
	Service   string `json:"service"`
	Channel   string `json:"channel,omitempty"`
	User      string `json:"user,omitempty"`
	UID       string `json:"uid,omitempty"`
	Role      string `json:"role,omitempty"`
	Token     string `json:"token"`
	IssuedAt  int64  `json:"issued_at"`
	ExpiresAt int64  `json:"expires_at"`
	TTL       int64  `json:"ttl"`
	KID       string `json:"kid"`
}

// Lifetime is the grant's lifetime as the issuer stated it, in seconds.
func (g *Grant) Lifetime() int64 { return g.ExpiresAt - g.IssuedAt }

// ErrorBody is the error of an error reply.
type ErrorBody struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	RetryAfter int    `json:"retry_after,omitempty"`
}

// Reply answers a request (or is pushed, with an id "push-…"). Exactly one
// of Tokens and Error is set.
type Reply struct {
	V        int        `json:"v"`
	ID       string     `json:"id"`
	IssuedAt int64      `json:"issued_at,omitempty"`
	Tokens   []Grant    `json:"tokens,omitempty"`
	Error    *ErrorBody `json:"error,omitempty"`
}

// PushPrefix starts the id of a reply nobody asked for.
const PushPrefix = "push-"

// IsPush reports whether the reply was pushed by the issuer.
func (r *Reply) IsPush() bool { return strings.HasPrefix(r.ID, PushPrefix) }

// TokenStatus is one token in a device status: never the token itself.
type TokenStatus struct {
	Name      string `json:"name"`
	KID       string `json:"kid"`
	ExpiresAt int64  `json:"expires_at"`
}

// DeviceStatus is a device's retained status (and its last will).
type DeviceStatus struct {
	V      int           `json:"v"`
	State  string        `json:"state"`
	Agent  string        `json:"agent,omitempty"`
	Tokens []TokenStatus `json:"tokens,omitempty"`
	// At, optional, is when the device last changed its status (unix
	// seconds, the device's clock).
	At int64 `json:"at,omitempty"`
	// Refused lists the tokens the issuer refuses this device (optional;
	// absent when none is refused), cleared once they are granted again.
	Refused []Refusal `json:"refused,omitempty"`
}

// Refusal is an issuer's error reply as a device reports it in its
// status: the code and message, never a token.
type Refusal struct {
	// Name is the token refused; absent for a request for every granted
	// token.
	Name string `json:"name,omitempty"`
	// Code is the error code of the refusal (CodeForbidden or
	// CodeInvalidRequest).
	Code string `json:"code"`
	// Message and At (unix seconds, the device's clock), optional, are
	// the issuer's message and when the refusal came.
	Message string `json:"message,omitempty"`
	At      int64  `json:"at,omitempty"`
}

// IssuerStatus is the issuers' retained status (and last will). A
// replica's own status (ReplicaStatus topic) carries the optional fields
// too.
type IssuerStatus struct {
	V       int    `json:"v"`
	State   string `json:"state"`
	Issuer  string `json:"issuer,omitempty"`
	Version string `json:"version,omitempty"`
	// Active, optional, is the kid the replica signs with.
	Active string `json:"active,omitempty"`
	// Campaign, optional, is the id of the rotation campaign the replica
	// follows, Pushed how many devices it pushed tokens to in it.
	Campaign string `json:"campaign,omitempty"`
	Pushed   int    `json:"pushed,omitempty"`
	// LatestExpiry, optional, is per kid the latest expiry (unix
	// seconds) of any token the replica signed with it.
	LatestExpiry map[string]int64 `json:"latest_expiry,omitempty"`
}

// Campaign is a certificate rotation campaign, retained on the Campaign
// topic: every issuer replica signs with To and pushes tokens signed
// with it to the online devices holding tokens of another kid, Rate
// devices a second in all.
type Campaign struct {
	V         int     `json:"v"`
	ID        string  `json:"id"`
	To        string  `json:"to"`
	Rate      float64 `json:"rate"`
	StartedAt int64   `json:"started_at"`
}

// Decode parses a payload into msg, enforcing the size limit and the
// schema version. Unknown fields are ignored, as the contract says.
func Decode(payload []byte, msg any) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("payload is %d bytes, max %d", len(payload), MaxPayload)
	}
	var head struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(payload, &head); err != nil {
		return fmt.Errorf("payload is not a JSON object: %w", err)
	}
	if head.V == nil {
		return errors.New(`payload has no schema version "v"`)
	}
	if *head.V != SchemaVersion {
		return fmt.Errorf("schema version %d is not supported (want %d)", *head.V, SchemaVersion)
	}
	if err := json.Unmarshal(payload, msg); err != nil {
		return fmt.Errorf("payload does not match the schema: %w", err)
	}
	return nil
}

// DecodeRequest parses and validates a request.
func DecodeRequest(payload []byte) (*Request, error) {
	var r Request
	if err := Decode(payload, &r); err != nil {
		return nil, err
	}
	if err := ValidateName("request id", r.ID); err != nil {
		return nil, err
	}
	if len(r.Tokens) > MaxRequestTokens {
		return nil, fmt.Errorf("request asks for %d tokens, max %d", len(r.Tokens), MaxRequestTokens)
	}
	for _, n := range r.Tokens {
		if err := ValidateName("token name", n); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// DecodeReply parses and validates a reply's shape (not its tokens).
func DecodeReply(payload []byte) (*Reply, error) {
	var r Reply
	if err := Decode(payload, &r); err != nil {
		return nil, err
	}
	if r.ID == "" {
		return nil, errors.New("reply has no id")
	}
	if (r.Error == nil) == (len(r.Tokens) == 0) {
		return nil, errors.New("reply must carry either tokens or an error")
	}
	if r.Error != nil && r.Error.Code == "" {
		return nil, errors.New("error reply has no code")
	}
	for i, g := range r.Tokens {
		if g.Name == "" || g.Token == "" || g.Service == "" {
			return nil, fmt.Errorf("reply token %d lacks name, service or token", i+1)
		}
		if g.ExpiresAt <= g.IssuedAt {
			return nil, fmt.Errorf("reply token %q expires_at %d is not after issued_at %d", g.Name, g.ExpiresAt, g.IssuedAt)
		}
	}
	return &r, nil
}

// Encode marshals msg compactly, failing if it exceeds MaxPayload.
func Encode(msg any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil {
		return nil, err
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	if len(out) > MaxPayload {
		return nil, fmt.Errorf("message is %d bytes, max %d", len(out), MaxPayload)
	}
	return out, nil
}
