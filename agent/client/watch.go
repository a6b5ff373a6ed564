package client

import (
	"bufio"
	"context"
	"math/rand/v2"
	"net"
	"time"

	"agoratokens/agent/socketproto"
)

// EventKind says what happened.
type EventKind string

// Event kinds. Watching, Token, WillExpire and Expired come from the
// agent; Disconnected is the client's own.
const (
	// EventWatching: the agent confirmed the watch, first and after each
	// reconnect; the current tokens follow. Names are the names watched
	// (nil: all).
	EventWatching EventKind = EventKind(socketproto.EventWatching)
	// EventToken: a token is current (at watch start and on reconnect:
	// the token in force; afterwards: each renewal). Pass it to the SDK.
	EventToken EventKind = EventKind(socketproto.EventToken)
	// EventWillExpire: the token expires soon; the agent is renewing it.
	EventWillExpire EventKind = EventKind(socketproto.EventWillExpire)
	// EventExpired: the token expired before a new one came; the agent
	// keeps trying.
	EventExpired EventKind = EventKind(socketproto.EventExpired)
	// EventDisconnected: the connection to the agent broke (Err says
	// why). The watch reconnects on its own and sends the current
	// tokens again.
	EventDisconnected EventKind = "disconnected"
)

// Event is one thing a watch reports.
type Event struct {
	Kind EventKind
	Name string
	// Token is the new token for EventToken; for EventWillExpire and
	// EventExpired only Name, KID, ExpiresAt, ExpiresIn and Deadline.
	Token Token
	// Names are the names watched, for EventWatching (nil: all).
	Names []string
	// Err is why the connection broke, for EventDisconnected.
	Err error
}

// Reconnect pacing for Watch.
const (
	reconnectFirst = 100 * time.Millisecond
	reconnectMax   = 5 * time.Second
)

// reconnectDelay is the pause before reconnect attempt n (0: the first):
// reconnectFirst doubling up to reconnectMax, then shortened by up to a
// quarter (r is uniform in [0,1)) so that the media processes of one
// agent do not all reconnect in the same instant after it restarts. (A page of code here
// rather than a backoff library: this package links nothing beyond the
// standard library.)
func reconnectDelay(n int, r float64) time.Duration {
	d := reconnectFirst
	for i := 0; i < n && d < reconnectMax; i++ {
		d *= 2
	}
	d = min(d, reconnectMax)
	return time.Duration(float64(d) * (1 - r/4))
}

// Watch streams the events of the named tokens (none: all) until ctx
// ends, then closes the channel. It returns an error if the first watch
// cannot start (agent down, unknown name, forbidden); after that it
// reconnects by itself whenever the agent goes away. Only a refusal ends
// it early: if the agent comes back with a config that no longer allows
// this process, the last event is an EventDisconnected whose Err is the
// forbidden *Error, and the channel closes (retrying cannot help until
// the agent's config changes). Read the channel promptly: the agent
// drops a watcher that falls far behind (the watch then reconnects and
// resends the current token).
func (c *Client) Watch(ctx context.Context, names ...string) (<-chan Event, error) {
	conn, sc, watching, err := c.startWatch(ctx, names)
	if err != nil {
		return nil, err
	}
	ch := make(chan Event, 16)
	go c.watchLoop(ctx, conn, sc, watching, names, ch)
	return ch, nil
}

// startWatch connects and sends the watch; it returns once the agent
// confirmed it, with the confirmation as an event.
func (c *Client) startWatch(ctx context.Context, names []string) (net.Conn, *bufio.Scanner, Event, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, Event{}, err
	}
	sc := newScanner(conn)
	m, err := roundTrip(ctx, conn, sc, socketproto.Request{Op: socketproto.OpWatch, ID: "watch", Names: names})
	if err == nil {
		err = replyError(m)
	}
	if err != nil {
		conn.Close()
		return nil, nil, Event{}, err
	}
	return conn, sc, Event{Kind: EventWatching, Names: m.Names}, nil
}

func (c *Client) watchLoop(ctx context.Context, conn net.Conn, sc *bufio.Scanner, watching Event, names []string, ch chan<- Event) {
	defer close(ch)
	for {
		if !emit(ctx, ch, watching) {
			conn.Close()
			return
		}
		err := forward(ctx, conn, sc, ch)
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		if !emit(ctx, ch, Event{Kind: EventDisconnected, Err: err}) {
			return
		}
		for attempt := 0; ; attempt++ {
			t := time.NewTimer(reconnectDelay(attempt, rand.Float64()))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if conn, sc, watching, err = c.startWatch(ctx, names); err == nil {
				break
			}
			if IsCode(err, socketproto.CodeForbidden) {
				emit(ctx, ch, Event{Kind: EventDisconnected, Err: err})
				return
			}
		}
	}
}

// forward delivers the events read from conn until it breaks or ctx ends.
func forward(ctx context.Context, conn net.Conn, sc *bufio.Scanner, ch chan<- Event) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	for {
		m, err := readMessage(sc)
		if err != nil {
			return err
		}
		ev := Event{Kind: EventKind(m.Event), Name: m.Name}
		switch ev.Kind {
		case EventToken, EventWillExpire, EventExpired:
			ev.Token = tokenOf(m, time.Now())
		default: // replies to requests this connection never sends
			continue
		}
		if !emit(ctx, ch, ev) {
			return ctx.Err()
		}
	}
}

func emit(ctx context.Context, ch chan<- Event, ev Event) bool {
	select {
	case ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
