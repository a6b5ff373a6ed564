package issuer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/internal/testbroker"
	"agoratokens/wire"
)

// The fleet page's test environment: a running issuer on mosquitto (the
// shipped ACL) with an operator API key, and a fleet of devices whose
// retained statuses a simulated agent client publishes as agents would,
// answering pushes with a fresh status.

const (
	pageKeyName = "ops"
	pageKey     = "operator-key-0123456789abcdef0123"
	mintingKey  = "minting-key-0123456789abcdef01234"
	agentsUser  = "fleet-agents"
	agentsPass  = "fleet-agents-password-0123456789"
)

type pageEnv struct {
	svc    *running
	cfg    *Config
	url    string // http://127.0.0.1:PORT
	agents *simAgents
}

// startPageEnv runs the issuer and publishes the statuses of n devices:
// every seventh offline (its tokens expired), every fifth expiring within
// five minutes, cam-00003 refused, the rest holding primary tokens for an
// hour.
func startPageEnv(t *testing.T, n int) *pageEnv {
	t.Helper()
	acl, err := os.ReadFile("../configs/mosquitto/acl")
	if err != nil {
		t.Fatal(err)
	}
	m := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{
		Users: map[string]string{issuerUser: issuerPass, agentsUser: agentsPass},
		ACL:   string(acl) + "\nuser " + agentsUser + "\ntopic readwrite agora/v1/devices/#\n",
	})
	brokerYAML := fmt.Sprintf("broker: {url: %q, username: %s, password_file: broker.password}", m.URL, issuerUser)
	s := writeSetup(t, brokerYAML, "listen: 127.0.0.1:0\nhttp: {api_keys_file: keys.yaml}\nstate_dir: state")
	replaceInFile(t, s.config, "certificates: [{id: primary, file: primary.cert}]",
		"certificates: [{id: primary, file: primary.cert}, {id: next, file: next.cert}]\nactive_certificate: primary")
	writeFileTB(t, filepath.Join(s.dir, "keys.yaml"), "keys:\n  - {name: "+pageKeyName+", role: operator, sha256: "+sha(pageKey)+"}\n  - {principal: cam-00001, sha256: "+sha(mintingKey)+"}\n", 0o600)
	log, _ := newLogger(t)
	svc := startService(t, s.config, log, nil)
	cfg, err := LoadConfig(s.config)
	if err != nil {
		t.Fatal(err)
	}
	env := &pageEnv{svc: svc, cfg: cfg, url: "http://" + svc.HTTPAddr()}
	env.agents = startSimAgents(t, m.URL, cfg.Topics(), n)
	waitRegistry(t, svc.Fleet(), func(r *Registry) bool { return r.Len() == n })
	return env
}

// simAgents is one client speaking for a fleet of agents: it publishes
// each device's retained status and, when the issuer pushes a device
// tokens, publishes the status the agent would then have.
type simAgents struct {
	c      mqtt.Client
	topics wire.Topics
	mu     sync.Mutex
	status map[string]wire.DeviceStatus
	wg     sync.WaitGroup // the statuses published after pushes
	booted chan string    // devices whose boot request was answered
}

func simDeviceID(i int) string { return fmt.Sprintf("cam-%05d", i) }

func startSimAgents(t *testing.T, url string, topics wire.Topics, n int) *simAgents {
	t.Helper()
	a := &simAgents{topics: topics, status: map[string]wire.DeviceStatus{}, booted: make(chan string, n)}
	a.c = testbroker.Connect(t, url, testbroker.ClientOptions{Username: agentsUser, Password: agentsPass})
	tok := a.c.Subscribe(topics.Root+"/devices/+/token", 1, func(_ mqtt.Client, m mqtt.Message) {
		var r wire.Reply
		if json.Unmarshal(m.Payload(), &r) != nil || r.Error != nil || len(r.Tokens) == 0 {
			return
		}
		id := strings.TrimSuffix(strings.TrimPrefix(m.Topic(), topics.Root+"/devices/"), "/token")
		if !r.IsPush() {
			a.booted <- id // the test's own statuses stand for what the agents then hold
			return
		}
		st := wire.DeviceStatus{V: 1, State: wire.StateOnline, Agent: "1.4.0", At: time.Now().Unix()}
		for _, g := range r.Tokens {
			st.Tokens = append(st.Tokens, wire.TokenStatus{Name: g.Name, KID: g.KID, ExpiresAt: g.ExpiresAt})
		}
		a.wg.Add(1)
		go func() { // not from paho's callback: it would wait on itself
			defer a.wg.Done()
			_ = a.publish(id, st)
		}()
	})
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("subscribe to the tokens: %v", tok.Error())
	}
	t.Cleanup(a.wg.Wait) // before the client disconnects
	// Each agent asks for its tokens at boot, as agents do: the issuer
	// signs (and its ledger and charts see it).
	for i := range n {
		req, err := wire.Encode(wire.Request{V: 1, ID: fmt.Sprintf("boot-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		tok := a.c.Publish(topics.Req(simDeviceID(i)), 1, false, req)
		if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("boot request: %v", tok.Error())
		}
	}
	for range n {
		select {
		case <-a.booted:
		case <-time.After(waitTimeout):
			t.Fatal("the issuer did not answer every boot request")
		}
	}
	now := time.Now()
	for i := range n {
		st := wire.DeviceStatus{V: 1, State: wire.StateOnline, Agent: "1.3.2", At: now.Add(-time.Duration(i) * time.Minute).Unix()}
		exp := now.Add(time.Hour)
		if i%5 == 4 {
			exp = now.Add(5 * time.Minute)
		}
		if i%7 == 6 {
			st.State, exp = wire.StateOffline, now.Add(-time.Hour)
		}
		st.Tokens = []wire.TokenStatus{{Name: "video", KID: "primary", ExpiresAt: exp.Unix()}, {Name: "signal", KID: "primary", ExpiresAt: exp.Unix()}}
		if i == 3 {
			st.Refused = []wire.Refusal{{Name: "doorbell", Code: wire.CodeForbidden, Message: "no such token", At: now.Unix()}}
		}
		if err := a.publish(simDeviceID(i), st); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func (a *simAgents) publish(id string, st wire.DeviceStatus) error {
	b, err := wire.Encode(st)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.status[id] = st
	a.mu.Unlock()
	tok := a.c.Publish(a.topics.Status(id), 1, true, b)
	if !tok.WaitTimeout(waitTimeout) {
		return fmt.Errorf("publish %s: no PUBACK within %v", id, waitTimeout)
	}
	return tok.Error()
}

// fleetStatusJSON reads the fleet as `fleet status --json` does: from
// the broker's retained statuses, through the same encoder.
func (e *pageEnv) fleetStatusJSON(t *testing.T) FleetStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := DialTool(ctx, e.cfg, "test-fleet")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	snap, err := ReadSnapshot(ctx, c, e.cfg.Topics(), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return NewFleetStatus(snap.Devices.Snapshot(), snap.Devices.Malformed(), snap.ReplicaStatuses(), time.Now())
}

// startCampaign publishes a rotation campaign to next, as rotate does.
func (e *pageEnv) startCampaign(t *testing.T) wire.Campaign {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := DialTool(ctx, e.cfg, "test-rotate")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	cp := NewCampaign("next", 1000, time.Now())
	if err := PublishCampaign(ctx, c, e.cfg.Topics(), cp); err != nil {
		t.Fatal(err)
	}
	return cp
}
