package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestNATSClusterFailover: a 3-node NATS cluster, two issuer replicas on
// the NATS transport, 21 agents spread over the nodes' MQTT listeners
// (each with all three in broker.url, its own node first), 30 s tokens and
// a watch client per agent. One node is killed mid-run (its agents fail
// over to the next node), then one issuer replica; then both come back.
// Throughout, no watch client holds an expired token, every agent keeps
// renewing, and no request is granted by more replicas than it was
// published times (the queue group hands each to one replica).
func TestNATSClusterFailover(t *testing.T) {
	const agents = 21
	// Renewed a third into their life (renew_window [0.3, 0.35]): about
	// 20 s to get through a failover, which took up to 8 s here
	// (JetStream moves the MQTT sessions' stream and consumer leaders
	// off the dead node before it takes their takeover), and a renewal
	// round every 10 s.
	const ttl = 30 * time.Second
	var ids []string
	for i := range agents {
		ids = append(ids, fmt.Sprintf("dev-%02d", i))
	}
	e := newNATSEnv(t, 3, ttl, ids...)
	obs := e.observe(0)
	a := e.startReplica("a")
	b := e.startReplica("b")
	urls := e.cluster.MQTTURLs()
	var ws []*natsWatched
	for i, id := range ids {
		var list []string
		for j := range urls {
			list = append(list, urls[(i+j)%len(urls)])
		}
		ws = append(ws, e.startWatchedAgent(id, list))
	}
	// round waits until every agent has renewed n more times.
	round := func(what string, n int64) {
		t.Helper()
		start := time.Now()
		base := make([]int64, len(ws))
		for i, w := range ws {
			base[i] = w.renewals.Load()
		}
		for i, w := range ws {
			w.waitRenewals(t, base[i]+n, 60*time.Second)
		}
		t.Logf("%s: every agent renewed %d more time(s) within %v", what, n, time.Since(start).Round(time.Millisecond))
	}
	round("steady", 1)

	// Kill node 3: its agents (i%3 == 2) fail over to node 1 or 2.
	dead := e.cluster.Nodes[2]
	alive := func(w *natsWatched) int { return w.connections(urls[0]) + w.connections(urls[1]) }
	before := map[string]int{}
	for i, w := range ws {
		if i%3 == 2 {
			before[w.id] = alive(w)
		}
	}
	killed := time.Now()
	dead.Stop()
	var times []time.Duration
	for i, w := range ws {
		if i%3 != 2 {
			continue
		}
		if !w.log.Wait(60*time.Second, func(string) bool { return alive(w) > before[w.id] }) {
			t.Fatalf("%s did not fail over to node 1 or 2\n%s", w.id, w.log.String())
		}
		times = append(times, time.Since(killed))
	}
	slices.Sort(times)
	t.Logf("node 3 killed: its %d agents were connected to another node within %v (median %v)",
		len(times), times[len(times)-1].Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond))
	round("node 3 down", 1)

	// Kill replica a; b serves alone.
	a.shutdown(t)
	round("replica a down", 1)

	// Both come back.
	dead.Restart()
	a2 := e.startReplica("a2")
	round("all back", 2)

	for _, w := range ws {
		w.check(t)
	}
	grants := map[string]int{}
	for _, r := range []*natsReplica{a, b, a2} {
		r.grants(grants)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(grants) == 0 {
		t.Fatal("no grant found in the replicas' logs")
	}
	served := map[string]int{}
	for _, r := range []*natsReplica{a, b, a2} {
		m := map[string]int{}
		r.grants(m)
		served[r.name] = len(m)
	}
	for key, n := range grants {
		if n > obs.reqs[key] {
			t.Errorf("request %s was granted %d times but published %d times", key, n, obs.reqs[key])
		}
	}
	t.Logf("requests granted: %d (replica a %d, b %d, a2 %d); published: %d", len(grants), served["a"], served["b"], served["a2"], len(obs.reqs))
	if served["a"] == 0 || served["b"] == 0 || served["a2"] == 0 {
		t.Errorf("the queue group did not split the requests: %v", served)
	}
}
