// Package client is the Go client of the agent's Unix-socket protocol
// (docs/socket.md), for media processes written in Go: Get the current
// token, Watch renewals as they happen (reconnecting when the agent
// restarts), ask for a Renew after a token error, read the Status.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"agoratokens/agent/socketproto"
)

// DefaultPath is where the agent listens unless configured otherwise.
const DefaultPath = socketproto.DefaultPath

// maxReply bounds a line read from the agent.
const maxReply = 1 << 20

// Error is an error reply from the agent. Code is one of socketproto's
// Code constants (not_found, unavailable, forbidden, …).
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return "agent: " + e.Code + ": " + e.Message }

// IsCode reports whether err is an agent error reply with code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Token is a token as the agent handed it out.
type Token struct {
	Name    string
	Service string // rtc, rtm, chat, …
	Channel string
	User    string
	UID     string
	Role    string
	Token   string // the AccessToken2 ("007…") to pass to the SDK
	KID     string // which App Certificate signed it
	// ExpiresAt is the expiry on the issuer's clock; the board's clock
	// may be off, so schedule with Deadline.
	ExpiresAt time.Time
	// ExpiresIn is the validity left when the agent wrote the line.
	ExpiresIn time.Duration
	// Deadline is when the token expires on this process's monotonic
	// clock: the time the line was read plus ExpiresIn.
	Deadline time.Time
}

// Client talks to one agent socket. Its methods are safe for concurrent
// use; Get, GetAll and Status share one connection, redialled when the
// agent restarted.
type Client struct {
	path string

	mu   sync.Mutex
	conn net.Conn
	sc   *bufio.Scanner
	seq  int
}

// Dial connects to the agent's socket at path ("" means DefaultPath).
func Dial(path string) (*Client, error) {
	if path == "" {
		path = DefaultPath
	}
	c := &Client{path: path}
	conn, err := c.dial(context.Background())
	if err != nil {
		return nil, err
	}
	c.setConn(conn)
	return c, nil
}

// Close closes the request connection. Watches end with their context.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.sc = nil, nil
	return err
}

// dial connects to the agent. Connecting to a Unix socket never waits
// (a full listen queue fails at once), so only a context that has ended
// already stops it; net.DialUnix rather than a net.Dialer keeps the name
// resolver, which a socket path never needs, out of the binary.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: c.path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("connect to the agent: %w", err)
	}
	return conn, nil
}

func (c *Client) setConn(conn net.Conn) {
	c.conn, c.sc = conn, newScanner(conn)
}

func newScanner(conn net.Conn) *bufio.Scanner {
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), maxReply)
	return sc
}

// Do sends one request and returns the agent's reply; an error reply is
// returned as *Error. get and status are retried once on a fresh
// connection if the old one broke (the agent restarted). It is the
// building block of the other methods, for callers that want the raw
// protocol message.
func (c *Client) Do(ctx context.Context, req socketproto.Request) (socketproto.Message, error) {
	if req.Op == socketproto.OpWatch {
		return socketproto.Message{}, errors.New("use Watch to watch")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	retry := req.Op == socketproto.OpGet || req.Op == socketproto.OpStatus
	for attempt := 0; ; attempt++ {
		if c.conn == nil {
			conn, err := c.dial(ctx)
			if err != nil {
				return socketproto.Message{}, err
			}
			c.setConn(conn)
		}
		c.seq++
		req.ID = "c" + strconv.Itoa(c.seq)
		m, err := roundTrip(ctx, c.conn, c.sc, req)
		if err == nil {
			return m, replyError(m)
		}
		c.conn.Close()
		c.conn, c.sc = nil, nil
		if !retry || attempt > 0 || ctx.Err() != nil {
			return socketproto.Message{}, err
		}
	}
}

// replyError turns an error reply into an *Error.
func replyError(m socketproto.Message) error {
	if m.Event != socketproto.EventError {
		return nil
	}
	return &Error{Code: m.Code, Message: m.Message}
}

// roundTrip writes req and reads lines until its reply (same id) or a
// connection-level error (no id: forbidden, too_many_clients) arrives.
func roundTrip(ctx context.Context, conn net.Conn, sc *bufio.Scanner, req socketproto.Request) (socketproto.Message, error) {
	conn.SetDeadline(time.Time{}) // a cancelled earlier call may have left one
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := send(conn, req); err != nil {
		// A refused caller's connection is closed at once: the reason
		// may be waiting to be read.
		if m, rerr := readMessage(sc); rerr == nil && m.ID == "" && m.Event == socketproto.EventError {
			return m, nil
		}
		return socketproto.Message{}, ctxErr(ctx, err)
	}
	for {
		m, err := readMessage(sc)
		if err != nil {
			return socketproto.Message{}, ctxErr(ctx, err)
		}
		if m.ID == req.ID || (m.ID == "" && m.Event == socketproto.EventError) {
			return m, nil
		}
	}
}

// ctxErr prefers the context's error to the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func send(conn net.Conn, req socketproto.Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send to the agent: %w", err)
	}
	return nil
}

// readMessage reads and decodes one line.
func readMessage(sc *bufio.Scanner) (socketproto.Message, error) {
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return socketproto.Message{}, fmt.Errorf("read from the agent: %w", err)
		}
		return socketproto.Message{}, errors.New("read from the agent: connection closed")
	}
	var m socketproto.Message
	if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
		return socketproto.Message{}, fmt.Errorf("agent sent a bad line: %w", err)
	}
	return m, nil
}

// tokenOf converts a token line read at now.
func tokenOf(m socketproto.Message, now time.Time) Token {
	t := Token{Name: m.Name, Service: m.Service, Channel: m.Channel, User: m.User, UID: m.UID,
		Role: m.Role, Token: m.Token, KID: m.KID}
	if m.ExpiresAt != 0 {
		t.ExpiresAt = time.Unix(m.ExpiresAt, 0)
	}
	if m.ExpiresIn != nil {
		t.ExpiresIn = time.Duration(*m.ExpiresIn) * time.Second
		t.Deadline = now.Add(t.ExpiresIn)
	}
	return t
}

// Get returns the named token if the agent holds a valid one; otherwise
// an *Error with code unavailable (not yet, or expired and renewing) or
// not_found (no such name).
func (c *Client) Get(ctx context.Context, name string) (Token, error) {
	if name == "" {
		return Token{}, errors.New("get: empty token name")
	}
	m, err := c.Do(ctx, socketproto.Request{Op: socketproto.OpGet, Name: name})
	if err != nil {
		return Token{}, err
	}
	return tokenOf(m, time.Now()), nil
}

// GetAll returns every token the agent holds a valid one for.
func (c *Client) GetAll(ctx context.Context) ([]Token, error) {
	m, err := c.Do(ctx, socketproto.Request{Op: socketproto.OpGet})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]Token, 0, len(m.Tokens))
	for _, t := range m.Tokens {
		out = append(out, tokenOf(t, now))
	}
	return out, nil
}

// Status is the agent's state; it never carries tokens.
type Status struct {
	Device string
	Broker string
	Tokens []TokenStatus
}

// TokenStatus is one token in a Status.
type TokenStatus struct {
	Name  string
	State string // valid, renewing, expired, missing
	KID   string
	// ExpiresAt is zero and ExpiresIn meaningless for a missing token.
	ExpiresAt time.Time
	ExpiresIn time.Duration
}

// Status returns the agent's state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	m, err := c.Do(ctx, socketproto.Request{Op: socketproto.OpStatus})
	if err != nil {
		return Status{}, err
	}
	st := Status{Device: m.Device, Broker: m.Broker}
	for _, t := range m.Tokens {
		ts := TokenStatus{Name: t.Name, State: t.State, KID: t.KID}
		if t.ExpiresAt != 0 {
			ts.ExpiresAt = time.Unix(t.ExpiresAt, 0)
		}
		if t.ExpiresIn != nil {
			ts.ExpiresIn = time.Duration(*t.ExpiresIn) * time.Second
		}
		st.Tokens = append(st.Tokens, ts)
	}
	return st, nil
}

// Renew asks the agent for a fresh token now (the SDK reported a token
// error, e.g. onRequestToken or error 109/110) and waits for it. The
// agent coalesces and rate-limits renewals, so give ctx a deadline.
func (c *Client) Renew(ctx context.Context, name string) (Token, error) {
	if name == "" {
		return Token{}, errors.New("renew: empty token name")
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return Token{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	sc := newScanner(conn)
	m, err := roundTrip(ctx, conn, sc, socketproto.Request{Op: socketproto.OpRenew, ID: "renew", Name: name})
	if err != nil {
		return Token{}, err
	}
	if err := replyError(m); err != nil {
		return Token{}, err
	}
	for {
		m, err := readMessage(sc)
		if err != nil {
			return Token{}, ctxErr(ctx, err)
		}
		if m.Event == socketproto.EventToken && m.Name == name {
			return tokenOf(m, time.Now()), nil
		}
	}
}
