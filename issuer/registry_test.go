package issuer

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/internal/testbroker"
	"agoratokens/internal/testlog"
	"agoratokens/wire"
)

func statusJSON(t *testing.T, state string, toks ...wire.TokenStatus) []byte {
	t.Helper()
	b, err := json.Marshal(wire.DeviceStatus{V: 1, State: state, Agent: "1.0.0", Tokens: toks})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegistryObserve(t *testing.T) {
	buf := &testlog.Buffer{}
	tp := wire.NewTopics("")
	r := NewRegistry(tp, 2, buf.Logger(), time.Now)
	tok := wire.TokenStatus{Name: "video", KID: "primary", ExpiresAt: 100}
	if !r.Observe(tp.Status("cam-1"), statusJSON(t, "online", tok)) {
		t.Fatal("a good status was refused")
	}
	for _, tc := range []struct {
		name, topic string
		payload     []byte
	}{
		{"not json", tp.Status("cam-2"), []byte("{")},
		{"no version", tp.Status("cam-2"), []byte(`{"state":"online"}`)},
		{"unknown state", tp.Status("cam-2"), []byte(`{"v":1,"state":"dancing"}`)},
		{"bad token name", tp.Status("cam-2"), []byte(`{"v":1,"state":"online","tokens":[{"name":"a b","kid":"k"}]}`)},
		{"bad device id", tp.Root + "/devices/" + strings.Repeat("x", 65) + "/status", statusJSON(t, "online")},
		{"not a status topic", tp.Req("cam-2"), statusJSON(t, "online")},
		{"too large", tp.Status("cam-2"), []byte(`{"v":1,"state":"online","agent":"` + strings.Repeat("a", wire.MaxPayload) + `"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.Malformed()
			if r.Observe(tc.topic, tc.payload) {
				t.Fatal("a malformed status was taken")
			}
			if r.Malformed() != before+1 {
				t.Fatalf("malformed count %d, want %d", r.Malformed(), before+1)
			}
		})
	}
	if r.Len() != 1 {
		t.Fatalf("registry holds %d devices, want 1", r.Len())
	}
	// The offline last will carries no tokens: the tokens held are kept.
	r.Observe(tp.Status("cam-1"), statusJSON(t, "offline"))
	d, _ := r.Get("cam-1")
	if d.Online || len(d.Tokens) != 1 || d.Tokens[0].KID != "primary" {
		t.Fatalf("after the last will: %+v, want offline with its token", d)
	}
	// The cap: a third device is refused, a known one still updates.
	r.Observe(tp.Status("cam-3"), statusJSON(t, "online"))
	if r.Observe(tp.Status("cam-4"), statusJSON(t, "online")) || r.Overflow() != 1 || r.Len() != 2 {
		t.Fatalf("over the cap: len %d overflow %d", r.Len(), r.Overflow())
	}
	if !r.Observe(tp.Status("cam-1"), statusJSON(t, "online")) {
		t.Fatal("a known device's status was refused at the cap")
	}
	// A cleared retained status forgets the device.
	r.Observe(tp.Status("cam-3"), nil)
	if _, ok := r.Get("cam-3"); ok || r.Len() != 1 {
		t.Fatal("a cleared status did not forget the device")
	}
	if n := strings.Count(buf.String(), "level=WARN"); n < 1 || n > 2 {
		t.Fatalf("%d warnings logged for 8 bad statuses in a moment, want them rate-limited to 1 or 2:\n%s", n, buf.String())
	}
}

// waitRegistry waits until the registry satisfies ok.
func waitRegistry(t *testing.T, r *Registry, ok func(*Registry) bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		ch := r.Changed()
		if ok(r) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("registry not as expected within %v: %d devices", waitTimeout, r.Len())
		}
	}
}

// TestRegistryAfterRestart: the registry comes from the retained
// statuses, so an issuer started after the devices knows them all.
func TestRegistryAfterRestart(t *testing.T) {
	ids := []string{"cam-1", "cam-2", "cam-3"}
	m, users, brokerYAML := mosquittoEnv(t, ids...)
	s := writeSetup(t, brokerYAML, "")
	log, _ := newLogger(t)
	first := startService(t, s.config, log, nil)
	tp := wire.NewTopics("")
	for i, id := range ids {
		c := testbroker.Connect(t, m.URL, testbroker.ClientOptions{ClientID: id, Username: id, Password: users[id]})
		testbroker.Publish(t, c, tp.Status(id), true, statusJSON(t, "online",
			wire.TokenStatus{Name: "video", KID: "primary", ExpiresAt: int64(1000 + i)}))
	}
	waitRegistry(t, first.Fleet(), func(r *Registry) bool { return r.Len() == 3 })
	first.stop(t)

	second := startService(t, s.config, log, nil)
	waitRegistry(t, second.Fleet(), func(r *Registry) bool { return r.Len() == 3 })
	for i, id := range ids {
		d, ok := second.Fleet().Get(id)
		if !ok || !d.Online || len(d.Tokens) != 1 || d.Tokens[0].ExpiresAt != int64(1000+i) {
			t.Errorf("after restart %s: %+v", id, d)
		}
	}
}

// TestDeviceCannotPublishCampaign: with the shipped mosquitto ACL a
// device cannot start a campaign (nor fake a replica).
func TestDeviceCannotPublishCampaign(t *testing.T) {
	m, users, _ := mosquittoEnv(t, "cam-1")
	tp := wire.NewTopics("")
	issuerC := testbroker.Connect(t, m.URL, testbroker.ClientOptions{Username: issuerUser, Password: issuerPass})
	campaigns := testbroker.Subscribe(t, issuerC, tp.Root+"/issuer/#")
	statuses := testbroker.Subscribe(t, issuerC, tp.AllStatuses())
	dev := testbroker.Connect(t, m.URL, testbroker.ClientOptions{ClientID: "cam-1", Username: "cam-1", Password: users["cam-1"]})
	cp, _ := json.Marshal(wire.Campaign{V: 1, ID: "evil", To: "primary", Rate: 1000})
	testbroker.Publish(t, dev, tp.Campaign(), true, cp)
	testbroker.Publish(t, dev, tp.ReplicaStatus("fake"), true, []byte(`{"v":1,"state":"online"}`))
	// The broker handles one client's publishes in order: once the
	// status published after them arrives, they would have too.
	testbroker.Publish(t, dev, tp.Status("cam-1"), true, statusJSON(t, "online"))
	testbroker.Receive(t, statuses, waitTimeout)
	select {
	case msg := <-campaigns:
		t.Fatalf("a device published on %s", msg.Topic())
	default:
	}
	// The issuer itself may.
	testbroker.Publish(t, issuerC, tp.Campaign(), false, cp)
	if got := testbroker.Receive(t, campaigns, waitTimeout); got.Topic() != tp.Campaign() {
		t.Fatalf("got %s", got.Topic())
	}
}

// TestDeviceCannotStartCampaignEmbedded: the embedded broker keeps a
// device's campaign from the issuer.
func TestDeviceCannotStartCampaignEmbedded(t *testing.T) {
	s := writeSetup(t, `broker: {embedded: {listen: "127.0.0.1:0", credentials_file: devices.yaml}}`,
		"")
	replaceInFile(t, s.config, "certificates: [{id: primary, file: primary.cert}]",
		"certificates: [{id: primary, file: primary.cert}, {id: next, file: next.cert}]\nactive_certificate: primary")
	secrets := writeCredentials(t, filepath.Join(s.dir, "devices.yaml"), "cam-1")
	log, _ := newLogger(t)
	r := startService(t, s.config, log, nil)
	tp := wire.NewTopics("")
	dev := testbroker.Connect(t, "tcp://"+r.BrokerAddr(), testbroker.ClientOptions{ClientID: "cam-1", Username: "cam-1", Password: secrets["cam-1"]})
	cp, _ := json.Marshal(wire.Campaign{V: 1, ID: "evil", To: "next", Rate: 1000})
	tok := dev.Publish(tp.Campaign(), 1, true, cp)
	tok.WaitTimeout(waitTimeout) // mochi refuses it and disconnects the device
	// A later status through a new connection: once it arrived, the
	// campaign, had it been let through, would have too.
	dev2 := testbroker.Connect(t, "tcp://"+r.BrokerAddr(), testbroker.ClientOptions{ClientID: "cam-1", Username: "cam-1", Password: secrets["cam-1"]})
	testbroker.Publish(t, dev2, tp.Status("cam-1"), true, statusJSON(t, "online"))
	waitRegistry(t, r.Fleet(), func(reg *Registry) bool { return reg.Len() == 1 })
	r.fleet.mu.Lock()
	cpSeen := r.fleet.campaign
	r.fleet.mu.Unlock()
	if cpSeen != nil || r.state.Load().signer.Active() != "primary" {
		t.Fatalf("the issuer followed a device's campaign %+v", cpSeen)
	}
}
