package socket

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socketproto"
)

// flushTimeout bounds how long a closing connection may take to flush the
// lines queued for it.
const flushTimeout = time.Second

// client is one accepted connection. Its lines go through a bounded
// queue to a writer goroutine, so nobody ever waits on the peer.
type client struct {
	conn *net.UnixConn
	peer Peer
	log  *slog.Logger
	out  chan []byte
	stop chan struct{} // closed: flush the queue, then close
	kill chan struct{} // closed: close at once (dropped)
	dead atomic.Bool

	stopOnce, killOnce sync.Once

	// Guarded by hub.mu.
	watching bool
	names    map[string]bool // watched names; nil: all
	sent     map[string]held // name → what the client was last told
	pending  map[string]held // renew asked: send the first token newer than this
}

// held is a token a client knows about.
type held struct {
	token   string
	at      time.Time // the token's ReceivedAt: orders tokens of one name
	expired bool      // the client was told it expired
}

// heldOf is what a client holds once told about t.
func heldOf(t agent.Token) held { return held{token: t.Token, at: t.ReceivedAt} }

// newer reports whether t replaces h: another token, received no earlier.
// An event still queued from before a watch or renew began is older.
func newer(t agent.Token, h held) bool {
	return t.Token != h.token && !t.ReceivedAt.Before(h.at)
}

func newClient(conn *net.UnixConn, peer Peer, queue int, log *slog.Logger) *client {
	return &client{
		conn: conn, peer: peer, log: log,
		out:  make(chan []byte, queue),
		stop: make(chan struct{}), kill: make(chan struct{}),
		sent: map[string]held{}, pending: map[string]held{},
	}
}

// send queues a line without blocking; a client whose queue is full is
// too slow and is dropped.
func (c *client) send(line []byte) {
	if c.dead.Load() {
		return
	}
	select {
	case c.out <- line:
	default:
		c.drop("event queue full: client too slow")
	}
}

// reply queues a message.
func (c *client) reply(m socketproto.Message) { c.send(encode(m)) }

// drop closes the connection at once, discarding what is queued.
func (c *client) drop(reason string) {
	c.killOnce.Do(func() {
		c.dead.Store(true)
		c.log.Warn("dropping socket client", "reason", reason)
		close(c.kill)
		c.conn.Close() // unblocks a writer stuck on a peer that does not read
	})
}

// finish flushes what is queued, then closes the connection.
func (c *client) finish() { c.stopOnce.Do(func() { close(c.stop) }) }

// watches reports whether the client watches name. Call with hub.mu held.
func (c *client) watches(name string) bool {
	return c.watching && (c.names == nil || c.names[name])
}

// write is the writer goroutine: it owns closing the connection.
func (c *client) write() {
	defer c.conn.Close()
	for {
		select {
		case line := <-c.out:
			if _, err := c.conn.Write(line); err != nil {
				c.dead.Store(true)
				return
			}
		case <-c.kill:
			return
		case <-c.stop:
			c.conn.SetWriteDeadline(time.Now().Add(flushTimeout))
			for {
				select {
				case line := <-c.out:
					if _, err := c.conn.Write(line); err != nil {
						return
					}
				default:
					return
				}
			}
		}
	}
}

// encode renders one protocol line.
func encode(m socketproto.Message) []byte {
	b, err := json.Marshal(m)
	if err != nil { // cannot happen: socketproto.Message holds only strings and numbers
		panic(fmt.Sprintf("socket: encode %s message: %v", m.Event, err))
	}
	return append(b, '\n')
}

// refuse tells a caller why it is not served and closes the connection.
func refuse(conn *net.UnixConn, code, msg string) {
	conn.SetWriteDeadline(time.Now().Add(flushTimeout))
	conn.Write(encode(errorMessage("", code, msg)))
	conn.Close()
}

// serve runs one connection: check the caller, then read requests until
// the peer hangs up, sends a line too long, or the server stops.
func (s *Server) serve(ctx context.Context, conn *net.UnixConn) {
	peer, err := peerOf(conn)
	if err != nil {
		s.log.Warn("socket client refused", "err", err)
		refuse(conn, socketproto.CodeForbidden, "cannot read the caller's credentials")
		return
	}
	log := s.log.With("pid", peer.PID, "uid", peer.UID)
	if err := authorize(peer, s.cfg.AllowUIDs, s.cfg.AllowGIDs); err != nil {
		log.Warn("socket client refused", "gid", peer.GID, "err", err)
		refuse(conn, socketproto.CodeForbidden, err.Error())
		return
	}
	c := newClient(conn, peer, s.cfg.QueueLen, log)
	if !s.hub.add(c) {
		log.Warn("socket client refused: too many clients", "max", s.cfg.MaxClients)
		refuse(conn, socketproto.CodeTooManyClients, fmt.Sprintf("the agent serves at most %d clients at once", s.cfg.MaxClients))
		return
	}
	log.Debug("socket client connected")
	var writer sync.WaitGroup
	writer.Go(c.write)
	// On shutdown, unblock the reader; the flush below closes cleanly.
	stopRead := context.AfterFunc(ctx, func() {
		conn.SetWriteDeadline(time.Now().Add(flushTimeout))
		conn.SetReadDeadline(time.Now())
	})

	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), socketproto.MaxLine+1)
	for sc.Scan() {
		line := sc.Bytes()
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			continue
		}
		s.handle(c, line)
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		log.Warn("socket client sent a line too long", "max", socketproto.MaxLine)
		c.reply(errorMessage("", socketproto.CodeLineTooLong, fmt.Sprintf("a request line may be at most %d bytes", socketproto.MaxLine)))
	}
	stopRead()
	s.hub.remove(c)
	// A peer that stopped reading must not hold the writer forever.
	conn.SetWriteDeadline(time.Now().Add(flushTimeout))
	c.finish()
	writer.Wait()
	log.Debug("socket client disconnected")
}

// handle answers one request line.
func (s *Server) handle(c *client, line []byte) {
	req, err := decodeRequest(line)
	if err != nil {
		c.reply(errorMessage(req.ID, socketproto.CodeBadRequest, err.Error()))
		return
	}
	switch req.Op {
	case socketproto.OpGet:
		c.reply(s.get(req))
	case socketproto.OpStatus:
		now := s.cfg.Clock.Now()
		st := s.src.Status(now)
		if st.Device == "" {
			st.Device = s.cfg.Device
		}
		m := statusMessage(st, now)
		m.ID = req.ID
		c.reply(m)
	case socketproto.OpWatch:
		s.hub.watch(c, req)
	case socketproto.OpRenew:
		s.hub.renew(c, req)
	}
}

// get answers a get: the named token, or all valid tokens.
func (s *Server) get(req socketproto.Request) socketproto.Message {
	now := s.cfg.Clock.Now()
	if req.Name == "" {
		m := socketproto.Message{Event: socketproto.EventTokens, ID: req.ID, Tokens: []socketproto.Message{}}
		for _, ts := range s.src.Status(now).Tokens {
			if t, ok := s.src.Current(ts.Name, now); ok {
				tm := tokenMessage(t, now)
				tm.Event = ""
				m.Tokens = append(m.Tokens, tm)
			}
		}
		return m
	}
	if t, ok := s.src.Current(req.Name, now); ok {
		m := tokenMessage(t, now)
		m.ID = req.ID
		return m
	}
	return s.missing(req.ID, req.Name, now)
}

// missing is the error for a name without a valid token: unavailable if
// the agent keeps that name, not_found otherwise.
func (s *Server) missing(id, name string, now time.Time) socketproto.Message {
	for _, ts := range s.src.Status(now).Tokens {
		if ts.Name != name {
			continue
		}
		if ts.State == agent.StateMissing {
			return errorMessage(id, socketproto.CodeUnavailable, fmt.Sprintf("no token %s yet: the agent is still fetching it", quote(name)))
		}
		return errorMessage(id, socketproto.CodeUnavailable, fmt.Sprintf("token %s has expired; the agent is renewing it", quote(name)))
	}
	return errorMessage(id, socketproto.CodeNotFound, fmt.Sprintf("the agent keeps no token named %s", quote(name)))
}
