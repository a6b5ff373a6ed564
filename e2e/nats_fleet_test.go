package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/issuer"
)

// TestNATSFleetStatusAndRotation: the fleet half over a 3-node NATS
// cluster, as over MQTT. Two issuer replicas on NATS see each other and
// the devices through the retained statuses nats-server's MQTT layer
// keeps (the devices spread over the three nodes); an operator command's
// snapshot (what `fleet status` reads) lists every device and replica;
// a rotation campaign published once is followed by both replicas,
// every device ends with tokens of the new certificate pushed exactly
// once by one replica, the verdict reaches complete, and no watch client
// ever holds an expired token. When the node the replicas' fleet links
// are on dies, the links fail over and the fleet view stays live.
func TestNATSFleetStatusAndRotation(t *testing.T) {
	devs := []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5", "dev-6"}
	e := newNATSEnv(t, 3, time.Hour, devs...)
	cert2 := hexTB(t)
	writeFileTB(t, filepath.Join(e.dir, "cert2.cert"), cert2+"\n")
	b, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFileTB(t, e.cfgPath, strings.Replace(string(b), "certificates: [{id: primary, file: primary.cert}]",
		"certificates: [{id: primary, file: primary.cert}, {id: cert2, file: cert2.cert}]\nactive_certificate: primary", 1))
	ra := e.startReplica("a")
	rb := e.startReplica("b")
	waitUntil(t, "replicas see each other", func() []<-chan struct{} {
		return []<-chan struct{}{ra.svc.ReplicasChanged(), rb.svc.ReplicasChanged()}
	}, func() bool { return len(ra.svc.Replicas()) == 2 && len(rb.svc.Replicas()) == 2 })

	urls := e.cluster.MQTTURLs()
	ws := map[string]*natsWatched{}
	for i, d := range devs {
		var list []string
		for j := range urls {
			list = append(list, urls[(i+j)%len(urls)])
		}
		ws[d] = e.startWatchedAgent(d, list)
	}
	online := func(r *natsReplica, kid string) func() bool {
		return func() bool {
			n := 0
			for _, d := range r.svc.Fleet().Snapshot() {
				if d.Online && len(d.Tokens) == 1 && d.Tokens[0].KID == kid {
					n++
				}
			}
			return n == len(devs)
		}
	}
	regChans := func() []<-chan struct{} {
		return []<-chan struct{}{ra.svc.Fleet().Changed(), rb.svc.Fleet().Changed()}
	}
	waitUntil(t, "both replicas know the fleet", regChans, func() bool { return online(ra, "primary")() && online(rb, "primary")() })

	// An operator command's view: over the cluster's MQTT listeners.
	cfg, err := issuer.LoadConfig(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tool, err := issuer.DialTool(ctx, cfg, "test-tool")
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Disconnect(0)
	snap, err := issuer.ReadSnapshot(ctx, tool, cfg.Topics(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(snap.Devices.Snapshot()); got != len(devs) {
		t.Fatalf("the snapshot lists %d devices, want %d", got, len(devs))
	}
	if reps := snap.ReplicaStatuses(); len(reps) != 2 || reps[ra.svc.Name()].Active != "primary" || reps[rb.svc.Name()].Active != "primary" {
		t.Fatalf("the snapshot's replicas: %+v", reps)
	}

	cp := issuer.NewCampaign("cert2", 100, time.Now())
	if err := issuer.PublishCampaign(ctx, tool, cfg.Topics(), cp); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "both replicas see every device on cert2", regChans, func() bool { return online(ra, "cert2")() && online(rb, "cert2")() })
	oldOnly, err := issuer.NewSigner(cfg.AppID, cfg.Certs()[:1], "primary", nil)
	if err != nil {
		t.Fatal(err)
	}
	newOnly, err := issuer.NewSigner(cfg.AppID, cfg.Certs()[1:], "cert2", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		w := ws[d]
		w.mu.Lock()
		tok := w.cur
		w.mu.Unlock()
		// The watch client may be a step behind the status: wait for it.
		for tok.KID != "cert2" {
			select {
			case <-w.update:
			case <-ctx.Done():
				t.Fatalf("%s's watch client holds a %s token", d, tok.KID)
			}
			w.mu.Lock()
			tok = w.cur
			w.mu.Unlock()
		}
		if _, _, err := newOnly.Verify(tok.Token); err != nil {
			t.Errorf("%s: the token does not verify with cert2: %v", d, err)
		}
		if _, _, err := oldOnly.Verify(tok.Token); err == nil {
			t.Errorf("%s: the token verifies with the old certificate", d)
		}
	}

	var p issuer.Progress
	waitUntil(t, "progress complete", func() []<-chan struct{} { return []<-chan struct{}{snap.Devices.Changed()} }, func() bool {
		p = issuer.CampaignProgress("cert2", snap.Devices.Snapshot(), snap.ReplicaStatuses(), snap.LatestExpiry(nil), time.Now())
		return p.Complete()
	})
	if p.Safe(time.Now()) {
		t.Fatalf("verdict %+v: safe while hour-long primary tokens live", p)
	}

	if pushedBy := pushedByOne(t, ra.svc, rb.svc); len(pushedBy) != len(devs) {
		t.Errorf("pushed %d devices, want %d: %v", len(pushedBy), len(devs), pushedBy)
	}
	for _, d := range devs {
		ws[d].check(t)
	}

	// The replicas' fleet links are on node 1, the first of their
	// mqtt_urls. Node 1 dies; once the links are connected again (to
	// another node), a status published after that (dev-2, on node 2,
	// stopping) reaches both replicas. It is waited for because the
	// status is published once, and while JetStream moves the retained
	// stream's leader off the dead node nats-server may not store it.
	e.cluster.Nodes[0].Stop()
	for _, r := range []*natsReplica{ra, rb} {
		if !r.log.Wait(time.Minute, func(s string) bool { return strings.Count(s, "fleet state connected over MQTT") >= 2 }) {
			t.Fatalf("replica %s's fleet link did not reconnect\n%s", r.name, r.log.String())
		}
	}
	ws["dev-2"].stop()
	offline := func(r *natsReplica) bool {
		d, ok := r.svc.Fleet().Get("dev-2")
		return ok && !d.Online
	}
	waitUntil(t, "both replicas see dev-2 go offline after node 1 died", regChans, func() bool { return offline(ra) && offline(rb) })
	if strings.Contains(e.logs.String(), cert2) {
		t.Error("a log line holds the new certificate")
	}
}
