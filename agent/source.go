package agent

import (
	"time"

	"agoratokens/device"
)

var _ Source = (*Engine)(nil)

// Current returns the named token if it is valid at now.
func (e *Engine) Current(name string, now time.Time) (Token, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.slots[name]
	if s == nil || s.tok == nil || !s.tok.Valid(now) {
		return Token{}, false
	}
	return *s.tok, true
}

// Status returns the agent's state at now.
func (e *Engine) Status(now time.Time) Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Status{Device: e.device, Broker: e.tr.State(), StateError: e.stateErr, Refused: e.refusalsLocked()}
	for _, s := range e.allSlots() {
		if s == e.discover {
			continue
		}
		ts := TokenStatus{Name: s.name, State: e.decideSlot(s, now).State}
		if s.tok != nil {
			ts.Token = *s.tok
		}
		st.Tokens = append(st.Tokens, ts)
	}
	return st
}

// Subscribe returns every event from now on. A subscriber that falls
// subscriberBuffer events behind is dropped: its channel is closed.
func (e *Engine) Subscribe() (<-chan Event, func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := e.nextSub
	e.nextSub++
	ch := make(chan Event, subscriberBuffer)
	e.subs[id] = ch
	return ch, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if c, ok := e.subs[id]; ok {
			close(c)
			delete(e.subs, id)
		}
	}
}

// Renew asks for a fresh token now. A renewal already under way, or one
// forced less than renew_min_interval ago, absorbs the call.
func (e *Engine) Renew(name string) error {
	now := e.clk.Now()
	e.mu.Lock()
	s := e.slots[name]
	if s == nil {
		e.mu.Unlock()
		return ErrUnknownToken
	}
	if s.inflight != "" || s.forced || (!s.lastForced.IsZero() && now.Sub(s.lastForced) < e.cfg.RenewMinInterval) {
		e.mu.Unlock()
		e.log.Debug("renew coalesced", "token", name)
		return nil
	}
	s.forced, s.lastForced = true, now
	e.mu.Unlock()
	e.log.Info("renewal asked for by a client", "token", name)
	e.poke()
	return nil
}

// boardDeviceID is the default device id for device_id: auto: the
// board's identity as package device derives it (a Raspberry Pi's serial,
// else an app-specific id from /etc/machine-id), after prefix.
func boardDeviceID(prefix string) (string, error) {
	b, err := device.Detect("/")
	if err != nil {
		return "", err
	}
	return device.DeviceID(prefix, b)
}

// emit hands ev to every subscriber without blocking: a subscriber whose
// buffer is full is dropped (its channel closed).
func (e *Engine) emit(ev Event) {
	for id, ch := range e.subs {
		select {
		case ch <- ev:
		default:
			close(ch)
			delete(e.subs, id)
			e.log.Warn("event subscriber too slow; dropped", "subscriber", id)
		}
	}
}
