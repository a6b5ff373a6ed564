package socket

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socketproto"
)

// resubscribeDelay spaces subscriptions when the engine keeps closing
// ours, so a broken Source cannot spin the hub.
const resubscribeDelay = time.Second

// hub fans the engine's events out to the clients. Everything that
// decides what a client has seen (watch start, renew, delivery) runs under
// mu, so a client never sees a token older than one it was already sent.
type hub struct {
	s       *Server
	mu      sync.Mutex
	clients map[*client]struct{}
}

func newHub(s *Server) *hub { return &hub{s: s, clients: map[*client]struct{}{}} }

// add registers c unless the server is full.
func (h *hub) add(c *client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) >= h.s.cfg.MaxClients {
		return false
	}
	h.clients[c] = struct{}{}
	return true
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
}

// run delivers the engine's events from the subscription Run opened
// until ctx ends. If the engine drops the subscription (it never waits
// for us, but a burst could overflow its buffer), the hub subscribes
// again and brings every watcher up to date.
func (h *hub) run(ctx context.Context, events <-chan agent.Event, cancel func()) {
	for {
		closed := h.pump(ctx, events)
		cancel()
		if !closed {
			return
		}
		h.s.log.Warn("engine closed the socket server's event subscription; subscribing again")
		t := h.s.cfg.Clock.NewTimer(resubscribeDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		// Subscribe, then catch up: an event in between is both in the
		// snapshot and queued, and wantEvent sends it once. The other
		// way round, an event between the two would be lost.
		events, cancel = h.s.src.Subscribe()
		h.resync()
	}
}

// pump delivers events until ctx ends (false) or the channel closes (true).
func (h *hub) pump(ctx context.Context, events <-chan agent.Event) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case ev, ok := <-events:
			if !ok {
				return true
			}
			h.deliver(ev)
		}
	}
}

// deliver offers one engine event to every client.
func (h *hub) deliver(ev agent.Event) {
	line := encode(eventMessage(ev, h.s.cfg.Clock.Now()))
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if wantEvent(c, ev) {
			c.send(line)
		}
	}
}

// wantEvent decides whether c gets ev, and records what c then holds.
// A watcher gets each token once and never an older one after a newer
// (the snapshot sent at watch start may be newer than events still
// queued), and the will_expire/expired events of the token it holds,
// expired once. A client that asked for a renewal gets the first token
// newer than the one current when it asked. Call with hub.mu held.
func wantEvent(c *client, ev agent.Event) bool {
	h := c.sent[ev.Name]
	if ev.Kind != agent.EventToken {
		if !c.watches(ev.Name) || (h.token != "" && h.token != ev.Token.Token) {
			return false
		}
		if ev.Kind == agent.EventExpired {
			if h.expired {
				return false
			}
			h = heldOf(ev.Token)
			h.expired = true
			c.sent[ev.Name] = h
		}
		return true
	}
	renewed := false
	if p, ok := c.pending[ev.Name]; ok && newer(ev.Token, p) {
		delete(c.pending, ev.Name)
		renewed = true
	}
	if c.watches(ev.Name) {
		if !newer(ev.Token, h) {
			return false
		}
		c.sent[ev.Name] = heldOf(ev.Token)
		return true
	}
	return renewed
}

// watch starts c's watch: a watching reply, then the current token of
// each watched name, then (from deliver) every event.
func (h *hub) watch(c *client, req socketproto.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.watching {
		c.reply(errorMessage(req.ID, socketproto.CodeBadRequest, "this connection is already watching; open another to watch other names"))
		return
	}
	now := h.s.cfg.Clock.Now()
	st := h.s.src.Status(now)
	var names map[string]bool
	if len(req.Names) > 0 {
		names = map[string]bool{}
		known := map[string]bool{}
		for _, ts := range st.Tokens {
			known[ts.Name] = true
		}
		for _, n := range req.Names {
			if !known[n] {
				c.reply(errorMessage(req.ID, socketproto.CodeNotFound, fmt.Sprintf("the agent keeps no token named %s", quote(n))))
				return
			}
			names[n] = true
		}
	}
	c.watching, c.names = true, names
	c.reply(socketproto.Message{Event: socketproto.EventWatching, ID: req.ID, Names: req.Names})
	h.snapshot(c, st, now)
}

// snapshot sends c the current state of each watched token it has not
// seen yet. Call with hub.mu held.
func (h *hub) snapshot(c *client, st agent.Status, now time.Time) {
	for _, ts := range st.Tokens {
		if !c.watches(ts.Name) {
			continue
		}
		if t, ok := h.s.src.Current(ts.Name, now); ok {
			if newer(t, c.sent[ts.Name]) {
				c.sent[ts.Name] = heldOf(t)
				c.reply(tokenMessage(t, now))
			}
			continue
		}
		if sent := c.sent[ts.Name]; ts.State == agent.StateExpired && !(sent.expired && sent.token == ts.Token.Token) {
			e := heldOf(ts.Token)
			e.expired = true
			c.sent[ts.Name] = e
			c.reply(eventMessage(agent.Event{Kind: agent.EventExpired, Name: ts.Name, Token: ts.Token}, now))
		}
	}
}

// resync brings every watcher up to date after events may have been lost.
func (h *hub) resync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.s.cfg.Clock.Now()
	st := h.s.src.Status(now)
	for c := range h.clients {
		if c.watching {
			h.snapshot(c, st, now)
		}
	}
}

// renew asks the engine for a fresh token: a renewing reply now, the
// token event when it arrives (to watchers of the name and to c).
func (h *hub) renew(c *client, req socketproto.Request) {
	if req.Name == "" {
		c.reply(errorMessage(req.ID, socketproto.CodeBadRequest, `renew needs a "name"`))
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.s.cfg.Clock.Now()
	var cur held
	if t, ok := h.s.src.Current(req.Name, now); ok {
		cur = heldOf(t)
	} else {
		for _, ts := range h.s.src.Status(now).Tokens {
			if ts.Name == req.Name && ts.State != agent.StateMissing {
				cur = heldOf(ts.Token)
			}
		}
	}
	c.pending[req.Name] = cur
	if err := h.s.src.Renew(req.Name); err != nil {
		delete(c.pending, req.Name)
		if errors.Is(err, agent.ErrUnknownToken) {
			c.reply(errorMessage(req.ID, socketproto.CodeNotFound, fmt.Sprintf("the agent keeps no token named %s", quote(req.Name))))
			return
		}
		c.reply(errorMessage(req.ID, socketproto.CodeUnavailable, fmt.Sprintf("cannot renew %s: %v", quote(req.Name), err)))
		return
	}
	c.log.Info("renewal requested over the socket", "name", req.Name)
	c.reply(socketproto.Message{Event: socketproto.EventRenewing, ID: req.ID, Name: req.Name})
}
