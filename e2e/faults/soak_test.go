package faults

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// Soak settings: tokens of 10 s, renewed 5 s ahead.
const (
	soakTTL         = 10 * time.Second
	soakRenewBefore = 5 * time.Second
	soakAgents      = 3
	// defaultSoak is the soak's length in the ordinary test run;
	// SOAK_DURATION (set by make soak) changes it.
	defaultSoak = time.Minute
)

// Growth of a long-lived process over the soak that counts as noise: the
// Go heap settling, a connection being re-made at the moment of reading.
const (
	rssNoiseKiB = 8 << 10
	fdNoise     = 3
)

func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv("SOAK_DURATION")
	if s == "" {
		return defaultSoak
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("SOAK_DURATION=%q: want a positive duration such as 10m", s)
	}
	return d
}

// TestSoak runs a fleet of three cameras under random faults for
// SOAK_DURATION (one minute unless set): mosquitto restarts, issuer
// SIGKILLs and cuts of one camera's path (refused, reset, delayed,
// throttled or blackholed), each lasting at most 3 s, one every 3–10 s, from a logged seed.
// Then it requires: no gap (no moment at which a camera held no valid
// token while the issuer had been reachable for the grace), no crash, and
// no growth of the agents' memory or descriptors beyond noise. The
// figures are printed on lines starting with "soak:".
func TestSoak(t *testing.T) {
	t.Parallel()
	length := soakDuration(t)
	r := seeded(t)
	f := newFleet(t, fleetOptions{Agents: soakAgents, TTL: soakTTL, RenewBefore: soakRenewBefore, LogLevel: "info"})
	f.waitAllTokens(15 * time.Second)
	// One renewal round first, so that the start figures are of processes
	// that have done everything once.
	f.settleOnce()
	start := f.usages()

	kinds := []string{"broker restart", "issuer kill", "path refused", "path reset", "path delayed", "path throttled", "path blackholed"}
	done := map[string]int{}
	began := time.Now()
	// Memory once a minute, to tell a leak (a steady climb) from the heap
	// settling (a step, then flat).
	series := map[string][]usage{}
	sampled := began
	for name, u := range start {
		series[name] = []usage{u}
	}
	for time.Since(began) < length {
		if time.Since(sampled) >= time.Minute {
			sampled = time.Now()
			for name, u := range f.usages() {
				series[name] = append(series[name], u)
			}
		}
		pause(between(r, 3*time.Second, 10*time.Second))
		if time.Since(began) >= length {
			break
		}
		kind := kinds[r.IntN(len(kinds))]
		outage := between(r, 200*time.Millisecond, 3*time.Second)
		a := f.agents[r.IntN(len(f.agents))]
		switch kind {
		case "broker restart":
			f.stopBroker()
			pause(outage)
			f.startBroker()
		case "issuer kill":
			f.issuer.kill()
			pause(outage)
			serving := f.servings()
			f.issuer.start()
			f.waitIssuerServing(serving)
		case "path refused", "path blackholed":
			a.cut(f.tl, strings.TrimPrefix(kind, "path "))
			pause(outage)
			a.restore(f.tl)
		case "path reset":
			a.reset(f.tl)
		case "path delayed":
			f.tl.note(a.id + ": path delayed by 500ms")
			a.proxy.Delay(500 * time.Millisecond)
			pause(outage)
			a.proxy.Restore()
			f.tl.note(a.id + ": path back to normal")
		case "path throttled":
			f.tl.note(a.id + ": path throttled to 2000 B/s")
			a.proxy.Throttle(2000)
			pause(outage)
			a.proxy.Restore()
			f.tl.note(a.id + ": path back to normal")
		}
		done[kind]++
	}
	f.tl.note("soak: faults end")
	f.settle(f.marks())
	end := f.usages()
	v := f.verdict()

	t.Logf("soak: %v of faults, seed above, %d cameras, tokens of %v renewed %v ahead, grace %v", length, soakAgents, soakTTL, soakRenewBefore, grace)
	t.Logf("soak: faults: %s", countList(done))
	t.Logf("soak: renewals %d, gaps %d totalling %.1fs (must be 0), longest stale hold %.1fs, problems %d",
		v.Renewals, len(v.Gaps), v.GapTotal.Seconds(), v.MaxStale.Seconds(), len(v.Problems))
	for _, name := range sortedKeys(start) {
		t.Logf("soak: %-7s start %v; end %v", name, start[name], end[name])
	}
	for _, name := range sortedKeys(series) {
		var rss []string
		for _, u := range append(series[name], end[name]) {
			rss = append(rss, fmt.Sprintf("%.1f", float64(u.RSSKiB)/1024))
		}
		t.Logf("soak: %-7s rss MiB each minute: %s", name, strings.Join(rss, " "))
	}
	if !v.ok() {
		t.Errorf("the promise was broken during the soak: %s\ntimeline:\n%s", v.summary(f.start), describe(f.tl.snapshot(), f.start))
	}
	for _, a := range f.agents {
		s, e := start[a.id], end[a.id]
		if s.PID != e.PID {
			t.Errorf("%s: pid %d at the start, %d at the end: the agent restarted", a.id, s.PID, e.PID)
			continue
		}
		if e.RSSKiB > s.RSSKiB+rssNoiseKiB {
			t.Errorf("%s: resident memory grew from %.1f to %.1f MiB over the soak", a.id, float64(s.RSSKiB)/1024, float64(e.RSSKiB)/1024)
		}
		if e.FDs > s.FDs+fdNoise {
			t.Errorf("%s: open descriptors grew from %d to %d over the soak", a.id, s.FDs, e.FDs)
		}
	}
}

// settleOnce waits until every camera has received one fresh token of
// each name.
func (f *fleet) settleOnce() {
	f.t.Helper()
	for _, a := range f.agents {
		from := a.w.mark()
		for _, name := range []string{"video", "signal"} {
			a.w.waitToken(f.t, from, name, 3*f.opts.TTL)
		}
	}
}

// usages reads the memory and descriptors of the issuer and every agent.
func (f *fleet) usages() map[string]usage {
	f.t.Helper()
	out := map[string]usage{}
	for _, d := range append([]*daemon{f.issuer}, f.agentDaemons()...) {
		u, err := readUsage(d.pid())
		if err != nil {
			f.t.Fatalf("%s: %v", d.name, err)
		}
		out[d.name] = u
	}
	return out
}

func (f *fleet) agentDaemons() []*daemon {
	var out []*daemon
	for _, a := range f.agents {
		out = append(out, a.d)
	}
	return out
}

func countList(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
