package socket

import (
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socketproto"
)

// This file turns the engine's tokens, events and status into protocol
// lines (package socketproto).

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
func tokenMessage(t agent.Token, now time.Time) socketproto.Message {
	return socketproto.Message{
		Event:     socketproto.EventToken,
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
func eventMessage(ev agent.Event, now time.Time) socketproto.Message {
	switch ev.Kind {
	case agent.EventToken:
		m := tokenMessage(ev.Token, now)
		m.Name = ev.Name
		return m
	case agent.EventWillExpire:
		return socketproto.Message{Event: socketproto.EventWillExpire, Name: ev.Name, KID: ev.Token.KID,
			ExpiresAt: ev.Token.ExpiresAt, ExpiresIn: seconds(max(ev.Token.ExpiresIn(now), 0))}
	default:
		return socketproto.Message{Event: string(ev.Kind), Name: ev.Name, KID: ev.Token.KID,
			ExpiresAt: ev.Token.ExpiresAt}
	}
}

// statusMessage is the reply to status at now.
func statusMessage(st agent.Status, now time.Time) socketproto.Message {
	m := socketproto.Message{Event: socketproto.EventStatus, Device: st.Device, Broker: st.Broker, Storage: st.StateError,
		Tokens: make([]socketproto.Message, 0, len(st.Tokens))}
	for _, r := range st.Refused {
		m.Refused = append(m.Refused, socketproto.Message{Name: r.Name, Code: r.Code, Message: r.Message})
	}
	for _, ts := range st.Tokens {
		e := socketproto.Message{Name: ts.Name, State: string(ts.State)}
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
func errorMessage(id, code, msg string) socketproto.Message {
	return socketproto.Message{Event: socketproto.EventError, ID: id, Code: code, Message: msg}
}
