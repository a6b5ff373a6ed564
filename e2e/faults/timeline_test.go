package faults

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Components of the timeline. An agent's own liveness and its network
// path are per device: agentComp(id), pathComp(id).
const (
	compIssuer = "issuer"
	compBroker = "broker"
)

func agentComp(id string) string { return "agent/" + id }
func pathComp(id string) string  { return "path/" + id }

// timeline records when each component went up and down, as the test
// made it happen (or saw it happen: a crash). It is the ground truth the
// checker compares the watch clients' records with.
type timeline struct {
	mu      sync.Mutex
	changes []change
}

// change is one transition of a component. A blip (a reset of every
// connection on a path) is a down and an up at the same instant: it
// starts a new recovery, as a restart does.
type change struct {
	At   time.Time
	Comp string
	Up   bool
	Note string
}

func (tl *timeline) set(comp string, up bool, note string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.changes = append(tl.changes, change{At: wallNow(), Comp: comp, Up: up, Note: note})
}

// blip records a fault that ends as it happens (every connection reset).
func (tl *timeline) blip(comp, note string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	now := wallNow()
	tl.changes = append(tl.changes, change{At: now, Comp: comp, Up: false, Note: note}, change{At: now, Comp: comp, Up: true})
}

// note records an event for the report without changing any state.
func (tl *timeline) note(text string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.changes = append(tl.changes, change{At: wallNow(), Note: text})
}

func (tl *timeline) snapshot() []change {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]change(nil), tl.changes...)
}

// wallNow is the wall clock without its monotonic reading. The checker
// compares the test's instants with tokens' expires_at, which is wall
// time on the issuer's clock (the same machine's), so every instant it
// keeps is a wall-clock one.
func wallNow() time.Time { return time.Now().Round(0) }

// interval is [From, To).
type interval struct{ From, To time.Time }

func (iv interval) len() time.Duration { return iv.To.Sub(iv.From) }

// downIntervals returns when comp was down within [start, end): before
// its first up, between each down and the next up, and after a last down.
// A blip is an empty interval at its instant.
func downIntervals(changes []change, comp string, start, end time.Time) []interval {
	var out []interval
	up := false
	downSince := start
	for _, c := range changes {
		if c.Comp != comp {
			continue
		}
		switch {
		case c.Up && !up:
			out = append(out, interval{downSince, c.At})
			up = true
		case !c.Up && up:
			downSince = c.At
			up = false
		}
	}
	if !up {
		out = append(out, interval{downSince, end})
	}
	return out
}

// checked returns the times within [start, end) at which every one of
// comps had been up for at least grace: when the checker requires a
// valid token. Each down interval (blips included) is stretched by grace
// at its end — the time the system is given to renew once after the
// component came back.
func checked(changes []change, comps []string, grace time.Duration, start, end time.Time) []interval {
	var bad []interval
	for _, comp := range comps {
		for _, iv := range downIntervals(changes, comp, start, end) {
			bad = append(bad, interval{iv.From, iv.To.Add(grace)})
		}
	}
	return subtract([]interval{{start, end}}, bad)
}

// union merges overlapping and touching intervals, dropping empty ones.
func union(ivs []interval) []interval {
	var in []interval
	for _, iv := range ivs {
		if iv.To.After(iv.From) {
			in = append(in, iv)
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].From.Before(in[j].From) })
	var out []interval
	for _, iv := range in {
		if n := len(out); n > 0 && !iv.From.After(out[n-1].To) {
			if iv.To.After(out[n-1].To) {
				out[n-1].To = iv.To
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// subtract returns the parts of a not covered by b.
func subtract(a, b []interval) []interval {
	a, b = union(a), union(b)
	var out []interval
	for _, iv := range a {
		cur := iv.From
		for _, cut := range b {
			if !cut.To.After(cur) || !cut.From.Before(iv.To) {
				continue
			}
			if cut.From.After(cur) {
				out = append(out, interval{cur, cut.From})
			}
			if cut.To.After(cur) {
				cur = cut.To
			}
		}
		if iv.To.After(cur) {
			out = append(out, interval{cur, iv.To})
		}
	}
	return out
}

// intersect returns the parts of a also in b.
func intersect(a, b []interval) []interval {
	return subtract(a, subtract(a, b))
}

func total(ivs []interval) time.Duration {
	var d time.Duration
	for _, iv := range union(ivs) {
		d += iv.len()
	}
	return d
}

// describe renders the timeline relative to start, for failure reports.
func describe(changes []change, start time.Time) string {
	var b strings.Builder
	for _, c := range changes {
		if c.Note == "" {
			continue
		}
		fmt.Fprintf(&b, "  %7.2fs  %s\n", c.At.Sub(start).Seconds(), c.Note)
	}
	return b.String()
}
