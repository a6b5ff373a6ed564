package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/agent"
	"agoratokens/internal/testbroker"
	"agoratokens/issuer"
	"agoratokens/wire"
)

// replica is one more issuer replica of the env, with its own client id
// and state dir.
type replica struct {
	svc  *issuer.Service
	stop func()
}

func (e *env) startReplica(name string) *replica {
	e.t.Helper()
	b, err := os.ReadFile(e.cfgPath)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "client_id: issuer-e2e", "client_id: "+name, 1) +
		"state_dir: state-" + name + "\nshare_group: issuers\n"
	path := filepath.Join(e.dir, name+".yaml")
	writeFile(e.t, path, cfg)
	svc, err := issuer.New(issuer.Options{ConfigFile: path, Logger: e.log.With("side", name)})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-svc.Started():
	case err := <-done:
		e.t.Fatalf("replica %s stopped: %v", name, err)
	case <-time.After(15 * time.Second):
		e.t.Fatalf("replica %s did not start", name)
	}
	var once sync.Once
	r := &replica{svc: svc, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("replica %s stopped with %v", name, err)
			}
		})
	}}
	e.t.Cleanup(r.stop)
	return r
}

// waitUntil waits for cond, re-checking whenever one of the channels
// that changed() returns closes.
func waitUntil(t *testing.T, what string, changed func() []<-chan struct{}, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		chs := changed()
		if cond() {
			return
		}
		agg := make(chan struct{})
		stop := make(chan struct{})
		for _, ch := range chs {
			go func() {
				select {
				case <-ch:
					select {
					case agg <- struct{}{}:
					case <-stop:
					}
				case <-stop:
				}
			}()
		}
		select {
		case <-agg:
			close(stop)
		case <-deadline:
			close(stop)
			t.Fatalf("%s: not within 30s", what)
		}
	}
}

// watchAgent records the tokens an agent gets and fails the test if it
// ever reports an expired token.
type watched struct {
	mu     sync.Mutex
	tokens map[string]agent.Token
	next   chan struct{}
}

func watch(t *testing.T, eng *agent.Engine) *watched {
	events, cancel := eng.Subscribe()
	w := &watched{tokens: map[string]agent.Token{}, next: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range events {
			switch ev.Kind {
			case agent.EventExpired:
				t.Errorf("device %s: token %s expired", eng.DeviceID(), ev.Name)
			case agent.EventToken:
				w.mu.Lock()
				w.tokens[ev.Name] = ev.Token
				close(w.next)
				w.next = make(chan struct{})
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func (w *watched) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

// onKID reports whether both tokens are signed with kid.
func (w *watched) onKID(kid string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.tokens) == 2 && w.tokens["video"].KID == kid && w.tokens["signal"].KID == kid
}

// pushedByOne returns which replica pushed each device in the campaign,
// and fails the test for a device two replicas pushed.
func pushedByOne(t *testing.T, replicas ...*issuer.Service) map[string]string {
	t.Helper()
	pushedBy := map[string]string{}
	for _, r := range replicas {
		for _, d := range r.CampaignPushed() {
			if other, dup := pushedBy[d]; dup {
				t.Errorf("device %s pushed by %s and by %s", d, other, r.Name())
			}
			pushedBy[d] = r.Name()
		}
	}
	return pushedBy
}

// TestRotationCampaignTwoReplicas: a campaign published once is followed
// by both replicas; every online agent ends with tokens that verify with
// the new certificate and not the old, each device pushed exactly once,
// no agent ever sees an expired token, an offline device catches up when
// it comes back, and the verdict is complete but not safe while old
// tokens live.
func TestRotationCampaignTwoReplicas(t *testing.T) {
	devs := []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5", "dev-6"}
	e := newEnv(t, time.Hour, devs...)
	e.certs = append(e.certs, randomHex(t))
	writeFile(t, filepath.Join(e.dir, "cert2.cert"), e.certs[1]+"\n")
	e.writeIssuerConfig("primary") // cert2 listed, not active
	a := e.startReplica("issuer-a")
	b := e.startReplica("issuer-b")
	waitUntil(t, "replicas see each other", func() []<-chan struct{} {
		return []<-chan struct{}{a.svc.ReplicasChanged(), b.svc.ReplicasChanged()}
	}, func() bool { return len(a.svc.Replicas()) == 2 && len(b.svc.Replicas()) == 2 })

	// Count the pushes each device gets, as the broker delivers them.
	cfg, err := issuer.LoadConfig(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	tool, err := issuer.DialTool(context.Background(), cfg, "test-tool")
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Disconnect(0)
	// Count the pushes each device gets, as the broker delivers them to
	// a second client of each device (the issuer's user cannot read the
	// token topics).
	var pmu sync.Mutex
	pushes := map[string]int{}
	pushNext := make(chan struct{})
	for _, d := range devs {
		c := testbroker.Connect(t, e.broker.URL, testbroker.ClientOptions{ClientID: d + ":watch", Username: d, Password: e.devices[d]})
		sub := c.Subscribe(cfg.Topics().Token(d), 1, func(_ mqtt.Client, m mqtt.Message) {
			r, err := wire.DecodeReply(m.Payload())
			if err == nil && strings.HasPrefix(r.ID, wire.PushPrefix+"cert2-") {
				pmu.Lock()
				pushes[d]++
				close(pushNext)
				pushNext = make(chan struct{})
				pmu.Unlock()
			}
		})
		if !sub.WaitTimeout(10*time.Second) || sub.Error() != nil {
			t.Fatal("subscribe", sub.Error())
		}
	}

	engines := map[string]*agent.Engine{}
	watches := map[string]*watched{}
	stops := map[string]func(){}
	for _, d := range devs {
		eng, stop := e.startAgent(d, filepath.Join(e.dir, "state-"+d))
		engines[d], stops[d], watches[d] = eng, stop, watch(t, eng)
	}
	onKID := func(kid string, ds ...string) func() bool {
		return func() bool {
			for _, d := range ds {
				if !watches[d].onKID(kid) {
					return false
				}
			}
			return true
		}
	}
	chans := func(ds ...string) func() []<-chan struct{} {
		return func() []<-chan struct{} {
			var out []<-chan struct{}
			for _, d := range ds {
				out = append(out, watches[d].changed())
			}
			return out
		}
	}
	waitUntil(t, "every agent holds primary tokens", chans(devs...), onKID("primary", devs...))
	fleetKnows := func(r *replica, online int) func() bool {
		return func() bool {
			n := 0
			for _, d := range r.svc.Fleet().Snapshot() {
				if d.Online && len(d.Tokens) == 2 {
					n++
				}
			}
			return n == online
		}
	}
	regChans := func() []<-chan struct{} {
		return []<-chan struct{}{a.svc.Fleet().Changed(), b.svc.Fleet().Changed()}
	}
	waitUntil(t, "replicas know the fleet", regChans, func() bool { return fleetKnows(a, 6)() && fleetKnows(b, 6)() })
	stops["dev-6"]() // offline during the campaign
	waitUntil(t, "dev-6 offline", regChans, func() bool { return fleetKnows(a, 5)() && fleetKnows(b, 5)() })

	cp := issuer.NewCampaign("cert2", 100, time.Now())
	if err := issuer.PublishCampaign(context.Background(), tool, cfg.Topics(), cp); err != nil {
		t.Fatal(err)
	}
	online := devs[:5]
	waitUntil(t, "every online agent holds cert2 tokens", chans(online...), onKID("cert2", online...))

	oldOnly, err := issuer.NewSigner(cfg.AppID, cfg.Certs()[:1], "primary", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range online {
		for _, name := range []string{"video", "signal"} {
			tok, ok := engines[d].Current(name, time.Now())
			if !ok {
				t.Fatalf("%s has no current %s", d, name)
			}
			e.verify(tok, d, "cert2")
			if _, _, err := oldOnly.Verify(tok.Token); err == nil {
				t.Fatalf("%s %s verifies with the old certificate", d, name)
			}
		}
	}

	// The verdict: complete once statuses say so, never safe while the
	// primary tokens handed out an hour long may be live.
	snap, err := issuer.ReadSnapshot(context.Background(), tool, cfg.Topics(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	var p issuer.Progress
	waitUntil(t, "progress complete", func() []<-chan struct{} { return []<-chan struct{}{snap.Devices.Changed()} }, func() bool {
		p = issuer.CampaignProgress("cert2", snap.Devices.Snapshot(), snap.ReplicaStatuses(), snap.LatestExpiry(nil), time.Now())
		return p.Complete()
	})
	// (dev-6 is no straggler here: the agent's offline status carries
	// no tokens, so a fresh reader cannot see what it holds; the
	// replicas' ledgers still cover its tokens.)
	if p.Safe(time.Now()) || time.Until(p.SafeAt) < 50*time.Minute {
		t.Fatalf("verdict %+v: want complete, not safe for about an hour", p)
	}

	// dev-6 comes back with its primary tokens and is pushed.
	eng6, _ := e.startAgent("dev-6", filepath.Join(e.dir, "state-dev-6"))
	watches["dev-6"] = watch(t, eng6)
	waitUntil(t, "dev-6 catches up", chans("dev-6"), onKID("cert2", "dev-6"))

	// Each online device pushed once, by one replica (dev-6 may have
	// asked before its push came: at most once).
	waitUntil(t, "the pushes counted", func() []<-chan struct{} {
		pmu.Lock()
		defer pmu.Unlock()
		return []<-chan struct{}{pushNext}
	}, func() bool {
		pmu.Lock()
		defer pmu.Unlock()
		n := 0
		for _, d := range online {
			n += min(pushes[d], 1)
		}
		return n == len(online)
	})
	pushedByOne(t, a.svc, b.svc)
	pmu.Lock()
	defer pmu.Unlock()
	for _, d := range devs {
		if pushes[d] > 1 || pushes[d] == 0 && d != "dev-6" {
			t.Errorf("device %s was pushed %d times, want once (all: %v)", d, pushes[d], pushes)
		}
	}
}
