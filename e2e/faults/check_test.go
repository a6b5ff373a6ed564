package faults

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"agoratokens/accesstoken"
)

// staleTolerance is how long past a token's expires_at a running agent
// may leave its client holding it before saying "expired". The agent
// counts the lifetime from the moment it sent the request and the
// issuer rounds the issue time up to the second, so the agent's deadline
// is never after expires_at; the second covers scheduling on a loaded
// machine.
const staleTolerance = time.Second

// deliverySlack is how long a watch connection must have been open while
// a token was current for the checker to require that the client saw it.
const deliverySlack = 500 * time.Millisecond

// camera is what the checker knows of one device: what its watch client
// recorded and what its agent logged.
type camera struct {
	Device string
	Names  []string // the tokens the policy grants it
	Record []watchLine
	Log    []logLine
}

// judgeInput is everything a verdict is computed from.
type judgeInput struct {
	Start, End time.Time
	// Grace is the time the system is given to renew once after every
	// component a camera depends on is back (docs/reliability.md).
	Grace   time.Duration
	Changes []change
	Cameras []camera
	// Certs verify every token handed out; empty skips the check.
	Certs []string
}

// gap is a stretch of time in which a camera held no valid token for a
// name although the issuer was reachable.
type gap struct {
	Device, Name string
	interval
}

// verdict is what the checker found.
type verdict struct {
	Gaps     []gap
	GapTotal time.Duration
	// Renewals counts tokens handed out beyond each camera's first of
	// each name.
	Renewals int
	// MaxStale is the longest a client held an expired token while its
	// agent ran (the issuer reachable or not).
	MaxStale time.Duration
	// Problems are broken promises besides gaps: tokens that do not
	// verify, tokens the agent got but never passed on, out-of-order or
	// repeated tokens on one connection, stale holds past tolerance.
	Problems []string
}

// ok reports whether the promise held.
func (v verdict) ok() bool { return len(v.Gaps) == 0 && len(v.Problems) == 0 }

// summary is a one-paragraph report.
func (v verdict) summary(start time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "renewals %d, gaps %d (%.1fs), longest stale hold %.1fs, problems %d",
		v.Renewals, len(v.Gaps), v.GapTotal.Seconds(), v.MaxStale.Seconds(), len(v.Problems))
	for _, g := range v.Gaps {
		fmt.Fprintf(&b, "\n  gap: %s %s from %.2fs to %.2fs (%.2fs)", g.Device, g.Name,
			g.From.Sub(start).Seconds(), g.To.Sub(start).Seconds(), g.len().Seconds())
	}
	for _, p := range v.Problems {
		b.WriteString("\n  problem: " + p)
	}
	return b.String()
}

// requiredComps are the components a camera depends on: the issuer is
// reachable from it when the issuer process, the broker, its agent and
// its network path are all up.
func requiredComps(device string) []string {
	return []string{compIssuer, compBroker, agentComp(device), pathComp(device)}
}

// judge replays the record of every camera against the timeline.
func judge(in judgeInput) verdict {
	var v verdict
	verified := map[string]bool{}
	for _, cam := range in.Cameras {
		must := checked(in.Changes, requiredComps(cam.Device), in.Grace, in.Start, in.End)
		agentUp := subtract([]interval{{in.Start, in.End}}, downIntervals(in.Changes, agentComp(cam.Device), in.Start, in.End))
		for _, name := range cam.Names {
			valid, stale := holds(cam.Record, name, in.End)
			for _, iv := range intersect(must, subtract([]interval{{in.Start, in.End}}, valid)) {
				v.Gaps = append(v.Gaps, gap{cam.Device, name, iv})
				v.GapTotal += iv.len()
			}
			for _, iv := range intersect(stale, agentUp) {
				if iv.len() > v.MaxStale {
					v.MaxStale = iv.len()
				}
				if iv.len() > staleTolerance {
					v.Problems = append(v.Problems, fmt.Sprintf("%s %s: the client held an expired token for %.1fs while its agent ran (from %.2fs)",
						cam.Device, name, iv.len().Seconds(), iv.From.Sub(in.Start).Seconds()))
				}
			}
		}
		v.Renewals += renewals(cam.Record)
		v.Problems = append(v.Problems, connectionOrder(cam)...)
		v.Problems = append(v.Problems, undelivered(cam, in.End)...)
		if len(in.Certs) > 0 {
			for _, l := range cam.Record {
				if l.Event != "token" || verified[l.Token] {
					continue
				}
				verified[l.Token] = true
				if err := verifyToken(l, in.Certs); err != nil {
					v.Problems = append(v.Problems, fmt.Sprintf("%s %s: token handed out at %.2fs: %v", cam.Device, l.Name, l.At.Sub(in.Start).Seconds(), err))
				}
			}
		}
		for _, l := range cam.Record {
			if l.Event == "unparsable" {
				v.Problems = append(v.Problems, fmt.Sprintf("%s: the agent sent a line that is not JSON: %s", cam.Device, l.Message))
			}
		}
	}
	return v
}

// holds returns when the client held a valid token for name, and when it
// held one past its expires_at. A token is held from the line that
// brought it until the next token for the name or the agent's "expired"
// for it; it is valid until its expires_at.
func holds(rec []watchLine, name string, end time.Time) (valid, stale []interval) {
	var held bool
	var from, until time.Time
	release := func(at time.Time) {
		if !held {
			return
		}
		held = false
		if at.After(until) {
			valid = append(valid, interval{from, until})
			stale = append(stale, interval{maxTime(from, until), at})
		} else {
			valid = append(valid, interval{from, at})
		}
	}
	for _, l := range rec {
		if l.Name != name {
			continue
		}
		switch l.Event {
		case "token":
			release(l.At)
			held, from, until = true, l.At, time.Unix(l.ExpiresAt, 0)
		case "expired":
			release(l.At)
		}
	}
	release(end)
	return union(valid), union(stale)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// renewals counts distinct tokens beyond the first of each name.
func renewals(rec []watchLine) int {
	seen := map[string]bool{}
	names := map[string]bool{}
	n := 0
	for _, l := range rec {
		if l.Event != "token" || seen[l.Token] {
			continue
		}
		seen[l.Token] = true
		if names[l.Name] {
			n++
		}
		names[l.Name] = true
	}
	return n
}

// connectionOrder checks the socket's ordering promise on each
// connection: each token is sent once, and never one issued before a
// token already sent for that name.
func connectionOrder(cam camera) []string {
	type key struct {
		conn int
		name string
	}
	sent := map[key]map[string]bool{}
	last := map[key]uint32{}
	var out []string
	for _, l := range cam.Record {
		if l.Event != "token" {
			continue
		}
		k := key{l.Conn, l.Name}
		if sent[k] == nil {
			sent[k] = map[string]bool{}
		}
		if sent[k][l.Token] {
			out = append(out, fmt.Sprintf("%s %s: the same token was sent twice on connection %d", cam.Device, l.Name, l.Conn))
		}
		sent[k][l.Token] = true
		if t, err := accesstoken.Parse(l.Token); err == nil {
			if t.IssueTs < last[k] {
				out = append(out, fmt.Sprintf("%s %s: connection %d was sent a token issued at %d after one issued at %d",
					cam.Device, l.Name, l.Conn, t.IssueTs, last[k]))
			}
			last[k] = max(last[k], t.IssueTs)
		}
	}
	return out
}

// undelivered lists tokens the agent logged as new that its watch client
// never received although a watch connection was open for a while
// during the time they were current.
func undelivered(cam camera, end time.Time) []string {
	got := map[string]bool{}
	for _, l := range cam.Record {
		if l.Event == "token" {
			got[l.Name+"/"+strconv.FormatInt(l.ExpiresAt, 10)] = true
		}
	}
	var watching []interval
	open := map[int]time.Time{}
	for _, l := range cam.Record {
		switch l.Event {
		case "watching":
			open[l.Conn] = l.At
		case evDisconnected:
			if at, ok := open[l.Conn]; ok {
				watching = append(watching, interval{at, l.At})
				delete(open, l.Conn)
			}
		}
	}
	for _, at := range open {
		watching = append(watching, interval{at, end})
	}
	type logged struct {
		at  time.Time
		exp string
	}
	byName := map[string][]logged{}
	for _, l := range cam.Log {
		if l.Msg == "new token" {
			byName[l.Attrs["token"]] = append(byName[l.Attrs["token"]], logged{l.At, l.Attrs["expires_at"]})
		}
	}
	var out []string
	for name, toks := range byName {
		sort.Slice(toks, func(i, j int) bool { return toks[i].at.Before(toks[j].at) })
		for i, tk := range toks {
			if got[name+"/"+tk.exp] {
				continue
			}
			current := interval{tk.at, end}
			if i+1 < len(toks) {
				current.To = toks[i+1].at
			}
			if total(intersect([]interval{current}, watching)) < deliverySlack || end.Sub(tk.at) < time.Second {
				continue // superseded before any client could be told, or too late to tell
			}
			out = append(out, fmt.Sprintf("%s %s: the agent got a token (expires_at %s) at %s that its watching client never received",
				cam.Device, name, tk.exp, tk.at.Format("15:04:05.000")))
		}
	}
	sort.Strings(out)
	return out
}

// verifyToken checks a handed-out token: an AccessToken2 signed with one
// of certs, living at least as long as the expires_at the agent stated.
func verifyToken(l watchLine, certs []string) error {
	t, err := accesstoken.Parse(l.Token)
	if err != nil {
		return fmt.Errorf("not an AccessToken2: %w", err)
	}
	if _, err := t.Verify(certs...); err != nil {
		return err
	}
	if real := int64(t.IssueTs) + int64(t.Expire); l.ExpiresAt > real {
		return fmt.Errorf("stated expires_at %d is after the token's own expiry %d", l.ExpiresAt, real)
	}
	return nil
}
