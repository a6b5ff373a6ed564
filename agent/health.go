package agent

import (
	"time"

	"agoratokens/buildinfo"
	"agoratokens/wire"
)

// Health sums the agent's state up for the status LED.
type Health struct {
	Expired  bool // a wanted token (not one the issuer refuses) is expired or missing
	Failing  bool // the last request for some token failed, or one waits for the broker
	Renewing bool // a renewal is under way
	// Refused: the issuer refuses some token (forbidden, invalid_request);
	// Status says which and why.
	Refused bool
}

// healthLocked sums the slots up at now (e.mu held).
func (e *Engine) healthLocked(now time.Time) Health {
	h := Health{Failing: e.held}
	for _, s := range e.allSlots() {
		if s.refused != nil {
			h.Refused = true
		}
		switch {
		case s.refused != nil:
		case s == e.discover:
			if s.tok == nil {
				h.Expired = true
			}
		case s.tok == nil || !s.tok.Valid(now):
			h.Expired = true
		}
		if s.failures > 0 {
			h.Failing = true
		}
		if s.inflight != "" || s.state == StateRenewing {
			h.Renewing = true
		}
	}
	return h
}

// deviceStatusLocked is the status to publish for the broker (e.mu held).
func (e *Engine) deviceStatusLocked() wire.DeviceStatus {
	st := wire.DeviceStatus{V: wire.SchemaVersion, State: wire.StateOnline, Agent: buildinfo.Version}
	for _, s := range e.allSlots() {
		if s.tok != nil && s != e.discover {
			st.Tokens = append(st.Tokens, wire.TokenStatus{Name: s.name, KID: s.tok.KID, ExpiresAt: s.tok.ExpiresAt})
		}
		if s.refused != nil {
			st.Refused = append(st.Refused, wire.Refusal{Name: s.name, Code: s.refused.Code})
		}
	}
	return st
}

// refusalsLocked lists the tokens the issuer refuses (e.mu held).
func (e *Engine) refusalsLocked() []Refusal {
	var out []Refusal
	for _, s := range e.allSlots() {
		if s.refused != nil {
			out = append(out, Refusal{Name: s.name, Code: s.refused.Code, Message: s.refused.Message})
		}
	}
	return out
}
