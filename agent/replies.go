package agent

import (
	"fmt"
	"time"

	"agoratokens/wire"
)

// handleResult takes the outcome of one request.
func (e *Engine) handleResult(r fetchResult) {
	now := e.clk.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	a, ok := e.attempts[r.id]
	if !ok {
		// Timed out already; a reply that still came is a late one.
		if r.reply != nil {
			e.lateOrPush(r.reply, now)
		}
		return
	}
	delete(e.attempts, r.id)
	a.cancel()
	if r.err != nil {
		e.failed(a, now, r.err)
		return
	}
	rep := r.reply
	if rep.Error != nil {
		e.failed(a, now, newIssuerError(rep.Error))
		return
	}
	e.setAnchor(rep, a)
	asked := map[string]bool{}
	for _, n := range a.names {
		asked[n] = true
	}
	for i := range rep.Tokens {
		g := &rep.Tokens[i]
		if a.names != nil && !asked[g.Name] {
			e.log.Warn("reply carries a token that was not asked for; rejected", "request", a.id, "token", g.Name)
			continue
		}
		// The token was issued after the request left: counting its
		// lifetime from then never overstates it.
		e.offer(g, a.sentAt, now, a.seq, false)
	}
	granted := map[string]bool{}
	for _, g := range rep.Tokens {
		granted[g.Name] = true
	}
	for _, s := range e.slotsOf(a) {
		switch {
		case e.satisfied(s, now):
			e.slotOK(s)
		case a.names == nil && s != e.discover && !granted[s.name]:
			// Asked for every granted token, the issuer left this one
			// out: the policy no longer grants it. It is a refusal
			// (asked for alone, rarely), not a passing failure to retry
			// with requests that renew every other token too.
			e.slotFailed(s, now, &IssuerError{Code: wire.CodeForbidden,
				Message: "not among the tokens the issuer grants this device any more"})
		default:
			e.slotFailed(s, now, fmt.Errorf("reply %s brought no fresh valid token for it", a.id))
		}
	}
}

// satisfied reports whether a slot holds a token that needs no renewal.
func (e *Engine) satisfied(s *slot, now time.Time) bool {
	if s == e.discover {
		return len(e.slots) > 0 && s.tok != nil
	}
	return e.decideSlot(s, now).State == StateValid
}

// IssuerError is an error reply of the issuer (or of an HTTP token
// server), carrying its stable wire code, so that classify can tell a
// refusal from a passing failure.
type IssuerError struct {
	// Code is wire.CodeForbidden, CodeInvalidRequest, CodeRateLimited,
	// CodeUnavailable, or a code this agent does not know.
	Code    string
	Message string
	// RetryAfter is the wait the issuer asked for (bounded, 0: none).
	RetryAfter time.Duration
}

func newIssuerError(b *wire.ErrorBody) *IssuerError {
	return &IssuerError{Code: b.Code, Message: b.Message, RetryAfter: retryAfter(b.RetryAfter)}
}

func (e *IssuerError) Error() string {
	msg := fmt.Sprintf("issuer replied %s: %s", e.Code, e.Message)
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	return msg
}

// handleUnsolicited takes a reply nobody waited for.
func (e *Engine) handleUnsolicited(r *wire.Reply) {
	now := e.clk.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lateOrPush(r, now)
}

// lateOrPush takes a push, or a reply to a request that already timed
// out (or a duplicate of one already taken). A late reply is a reply to a
// request the agent made: its tokens are taken if they were asked for
// and are newer than the current ones. A push is taken only if it checks
// out against the token of that name the agent holds (verifyPush).
// Anything else is dropped with a warning.
func (e *Engine) lateOrPush(r *wire.Reply, now time.Time) {
	a, late := e.recent[r.ID]
	if !late && !r.IsPush() {
		e.log.Warn("reply to an unknown request id; dropped", "request", r.ID)
		return
	}
	if r.Error != nil {
		e.log.Info("late error reply ignored", "request", r.ID, "code", r.Error.Code)
		return
	}
	asked := map[string]bool{}
	if late {
		for _, n := range a.names {
			asked[n] = true
		}
	}
	for i := range r.Tokens {
		g := &r.Tokens[i]
		var taken bool
		switch {
		case late && a.names != nil && !asked[g.Name]:
			e.log.Warn("late reply carries a token that was not asked for; rejected", "request", r.ID, "token", g.Name)
		case late:
			taken = e.offer(g, a.sentAt, now, a.seq, false)
		default:
			taken = e.offer(g, e.pushReceivedAt(g, now), now, 0, true)
		}
		if taken {
			if s := e.slots[g.Name]; s != nil && s.inflight == "" {
				e.slotOK(s)
			}
		}
	}
	if late {
		e.setAnchor(r, a)
	}
}

// pushReceivedAt places a pushed token's issue time on our monotonic
// clock through the anchor of the last solicited reply: a push that
// waited in the broker is aged by the wait. Without an anchor, it counts
// from now.
func (e *Engine) pushReceivedAt(g *wire.Grant, now time.Time) time.Time {
	if e.anchor.mono.IsZero() {
		return now
	}
	t := e.anchor.mono.Add(time.Duration(g.IssuedAt-e.anchor.issuer) * time.Second)
	if t.After(now) {
		return now
	}
	return t
}

// setAnchor ties the issuer's clock to ours through the reply r to
// request a; a late reply to an older request than the one that set the
// anchor does not move it back.
func (e *Engine) setAnchor(r *wire.Reply, a *attempt) {
	issued := r.IssuedAt
	if issued == 0 && len(r.Tokens) > 0 {
		issued = r.Tokens[0].IssuedAt
	}
	if issued > 0 && a.seq >= e.anchor.seq {
		e.anchor = anchor{issuer: issued, mono: a.sentAt, seq: a.seq}
	}
}

// offer checks a grant and makes it the current token of its name when
// it is good and newer (see newer). seq is the request it answers (0 for
// a push, which must also pass verifyPush). It reports whether the token
// was taken.
func (e *Engine) offer(g *wire.Grant, receivedAt, now time.Time, seq uint64, push bool) bool {
	s := e.slots[g.Name]
	if s == nil && e.discover == nil {
		e.log.Info("token not in the configured list; ignored", "token", g.Name)
		return false
	}
	if err := checkGrant(g); err != nil {
		e.log.Warn("bad token in reply; rejected", "token", g.Name, "err", err)
		return false
	}
	if push {
		var cur *Token
		if s != nil {
			cur = s.tok
		}
		if err := verifyPush(g, cur); err != nil {
			e.log.Warn("pushed token rejected", "token", g.Name, "err", err)
			return false
		}
	}
	tok := Token{Grant: *g, ReceivedAt: receivedAt}
	if !tok.Valid(now) {
		e.log.Warn("token in reply is already expired; rejected", "token", g.Name, "lifetime_s", g.Lifetime())
		return false
	}
	if s != nil && s.tok != nil && s.tok.Valid(now) {
		cur := held{seq: s.tokSeq, deadline: s.tok.Deadline(), kid: s.tok.KID, token: s.tok.Token}
		cand := held{seq: seq, deadline: tok.Deadline(), kid: g.KID, token: g.Token}
		if ok, why := newer(cur, cand); !ok {
			if cand.token != cur.token {
				e.log.Info("token is not newer than the current one; ignored", "token", g.Name, "why", why,
					"issued_at", g.IssuedAt, "current_issued_at", s.tok.IssuedAt)
			}
			return false
		}
	}
	if s == nil {
		s = e.newSlot(g.Name)
		e.slots[g.Name] = s
	}
	if e.discover != nil && e.discover.tok == nil {
		e.discover.tok = &tok // discovery is done
		e.slotOK(e.discover)
	}
	e.hold(s, &tok, now)
	s.tokSeq = seq
	if push {
		s.tokSeq = e.reqSeq
	}
	s.state = StateValid
	e.dirty = true
	e.log.Info("new token", "token", g.Name, "kid", g.KID, "expires_at", g.ExpiresAt, "lifetime_s", g.Lifetime())
	// The token is persisted before anyone hears of it: an agent killed
	// just after handing it out comes back with it, not with the one
	// before (and the boot clock is read now, not after a watcher has
	// acted on the event). A write that fails, or a state directory
	// already known to be unusable, is left to persist, which retries and
	// reports it; a stale unwritten token of this name must not be
	// written over the new one later.
	sv := e.saved(&tok, now)
	if e.persistOK && e.store.save(sv) == nil {
		delete(e.unsaved, g.Name)
	} else {
		e.saves = append(e.saves, sv)
	}
	e.emit(Event{Kind: EventToken, Name: g.Name, Token: tok, At: now})
	return true
}

// saved is the persisted form of a token that arrived now.
func (e *Engine) saved(t *Token, now time.Time) *savedToken {
	st := &savedToken{Grant: t.Grant, ReceivedWall: e.clk.Wall().Add(t.ReceivedAt.Sub(now)).Unix()}
	if id, up, err := e.boot(); err == nil {
		st.BootID = id
		st.ReceivedUptime = int64(up - now.Sub(t.ReceivedAt))
	}
	return st
}

// maxRetryAfter bounds the wait a server may ask for: a wrong or hostile
// retry_after must not silence a device for days (nor overflow).
const maxRetryAfter = time.Hour

// retryAfter is how long a server's retry_after (seconds) holds the next
// attempt back: 0 for none or a negative value, at most maxRetryAfter.
func retryAfter(secs int) time.Duration {
	switch {
	case secs <= 0:
		return 0
	case secs >= int(maxRetryAfter/time.Second):
		return maxRetryAfter
	}
	return time.Duration(secs) * time.Second
}
