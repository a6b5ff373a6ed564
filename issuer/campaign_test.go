package issuer

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"agoratokens/internal/testbroker"
	"agoratokens/wire"
)

func TestCampaignProgress(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tok := func(kid string, in time.Duration) wire.TokenStatus {
		return wire.TokenStatus{Name: "video", KID: kid, ExpiresAt: now.Add(in).Unix()}
	}
	dev := func(id string, online bool, toks ...wire.TokenStatus) DeviceRecord {
		return DeviceRecord{ID: id, Online: online, Tokens: toks}
	}
	on := map[string]wire.IssuerStatus{"a": {State: "online", Active: "next"}}
	for _, tc := range []struct {
		name             string
		devices          []DeviceRecord
		replicas         map[string]wire.IssuerStatus
		latest           map[string]int64
		complete, safe   bool
		todo, stragglers int
		safeAt           time.Time
	}{
		{name: "all on next, old expired", devices: []DeviceRecord{dev("d1", true, tok("next", time.Hour))},
			replicas: on, latest: map[string]int64{"primary": now.Add(-time.Second).Unix()},
			complete: true, safe: true, safeAt: now.Add(-time.Second)},
		{name: "all on next, an old token signed may be live", devices: []DeviceRecord{dev("d1", true, tok("next", time.Hour))},
			replicas: on, latest: map[string]int64{"primary": now.Add(time.Minute).Unix()},
			complete: true, safe: false, safeAt: now.Add(time.Minute)},
		{name: "old expiry exactly now is safe", devices: []DeviceRecord{dev("d1", true, tok("next", time.Hour))},
			replicas: on, latest: map[string]int64{"primary": now.Unix()}, complete: true, safe: true, safeAt: now},
		{name: "an online device on the old kid", devices: []DeviceRecord{dev("d1", true, tok("primary", -time.Hour)), dev("d2", true, tok("next", time.Hour))},
			replicas: on, complete: false, todo: 1, safeAt: now.Add(-time.Hour)},
		{name: "an offline straggler with a live old token", devices: []DeviceRecord{dev("d1", false, tok("primary", 10*time.Minute))},
			replicas: on, latest: map[string]int64{"primary": now.Add(-time.Hour).Unix()},
			complete: true, safe: false, stragglers: 1, safeAt: now.Add(10 * time.Minute)},
		{name: "an offline device whose old token expired", devices: []DeviceRecord{dev("d1", false, tok("primary", -time.Minute))},
			replicas: on, complete: true, safe: true, safeAt: now.Add(-time.Minute)},
		{name: "a replica still on the old kid", devices: []DeviceRecord{dev("d1", true, tok("next", time.Hour))},
			replicas: map[string]wire.IssuerStatus{"a": {State: "online", Active: "next"}, "b": {State: "online", Active: "primary"}},
			complete: false},
		{name: "no replica running", devices: []DeviceRecord{dev("d1", true, tok("next", time.Hour))}, complete: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := CampaignProgress("next", tc.devices, tc.replicas, tc.latest, now)
			if p.Complete() != tc.complete || p.Safe(now) != tc.safe || p.ToDo != tc.todo || p.Stragglers != tc.stragglers {
				t.Fatalf("progress %+v: complete %v safe %v, want %v %v", p, p.Complete(), p.Safe(now), tc.complete, tc.safe)
			}
			if !tc.safeAt.IsZero() && !p.SafeAt.Equal(tc.safeAt) {
				t.Fatalf("safe at %v, want %v", p.SafeAt, tc.safeAt)
			}
			// Never safe while a token of another kid can be live.
			if p.Safe(now) {
				for _, d := range tc.devices {
					for _, tk := range d.Tokens {
						if tk.KID != "next" && tk.ExpiresAt > now.Unix() {
							t.Fatalf("safe while %s holds a live %s token", d.ID, tk.KID)
						}
					}
				}
				for kid, e := range tc.latest {
					if kid != "next" && e > now.Unix() {
						t.Fatalf("safe while a %s token signed may be live", kid)
					}
				}
			}
		})
	}
}

// TestReplicaStartedMidCampaignFollowsIt: the campaign is retained, so
// an issuer started after it signs with its certificate at once, pushes
// the online devices still on the old kid, and records the new kid's
// latest expiry in its state dir.
func TestReplicaStartedMidCampaignFollowsIt(t *testing.T) {
	m, users, brokerYAML := mosquittoEnv(t, "cam-1")
	s := writeSetup(t, brokerYAML, "")
	replaceInFile(t, s.config, "certificates: [{id: primary, file: primary.cert}]",
		"certificates: [{id: primary, file: primary.cert}, {id: next, file: next.cert}]\nactive_certificate: primary")
	log, _ := newLogger(t)
	first := startService(t, s.config, log, nil)

	cam := connectDevice(t, m.URL, "cam-1", users["cam-1"])
	if r := cam.request(t, "r-1"); r.Error != nil || r.Tokens[0].KID != "primary" {
		t.Fatalf("before the campaign: %+v", r)
	}
	exp := time.Now().Add(time.Hour).Unix()
	publishDeviceStatus(t, cam, wire.TokenStatus{Name: "video", KID: "primary", ExpiresAt: exp})
	first.stop(t)

	cfg, err := LoadConfig(s.config)
	if err != nil {
		t.Fatal(err)
	}
	tool, err := DialTool(context.Background(), cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Disconnect(0)
	cp := NewCampaign("next", 1000, time.Now())
	if err := PublishCampaign(context.Background(), tool, cfg.Topics(), cp); err != nil {
		t.Fatal(err)
	}

	second := startService(t, s.config, log, nil)
	push := cam.reply(t)
	if !push.IsPush() || push.ID != wire.PushPrefix+"next-"+cp.ID || len(push.Tokens) == 0 {
		t.Fatalf("the restarted issuer pushed %+v, want the campaign's push", push)
	}
	for _, g := range push.Tokens {
		if _, kid, err := second.state.Load().signer.Verify(g.Token); err != nil || kid != "next" || g.KID != "next" {
			t.Fatalf("pushed %s: kid %q/%q %v", g.Name, kid, g.KID, err)
		}
	}
	if r := cam.request(t, "r-2"); r.Error != nil || r.Tokens[0].KID != "next" {
		t.Fatalf("a request after the campaign: %+v", r)
	}
	ledger, err := ReadLedger(filepath.Join(s.dir, "state"))
	if err != nil || ledger["next"] < time.Now().Add(time.Hour).Unix() || ledger["primary"] < exp {
		t.Fatalf("ledger %v %v: want both kids' latest expiries", ledger, err)
	}
	if got := second.CampaignPushed(); fmt.Sprint(got) != "[cam-1]" {
		t.Fatalf("pushed %v", got)
	}
	mfs, err := second.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if got["agora_issuer_fleet_devices"] != 1 || got["agora_issuer_campaign_pushed"] != 1 {
		t.Fatalf("fleet metrics %v", got)
	}
}

// publishDeviceStatus publishes a device's retained online status.
func publishDeviceStatus(t *testing.T, d *device, toks ...wire.TokenStatus) {
	t.Helper()
	b, err := wire.Encode(wire.DeviceStatus{V: 1, State: "online", Agent: "test", Tokens: toks})
	if err != nil {
		t.Fatal(err)
	}
	tokn := d.c.Publish(d.topics.Status(d.id), 1, true, b)
	if !tokn.WaitTimeout(waitTimeout) || tokn.Error() != nil {
		t.Fatal(tokn.Error())
	}
}

// TestBoundUnrecorded: a certificate with no record of its tokens is
// taken to have signed until the campaign began, for max_ttl.
func TestBoundUnrecorded(t *testing.T) {
	cfg := &Config{Certificates: []CertificateConfig{{ID: "primary"}, {ID: "old"}, {ID: "next"}}, Limits: Limits{MaxTTL: 24 * time.Hour}}
	start := time.Unix(1_800_000_000, 0)
	got := BoundUnrecorded(cfg, "next", map[string]int64{"primary": 5}, start)
	if len(got) != 2 || got["primary"] != 5 || got["old"] != start.Add(24*time.Hour).Unix() {
		t.Fatalf("bounded %v", got)
	}
	p := CampaignProgress("next", nil, map[string]wire.IssuerStatus{"a": {State: "online", Active: "next"}}, got, start.Add(time.Hour))
	if !p.Complete() || p.Safe(start.Add(time.Hour)) || !p.SafeAt.Equal(start.Add(24*time.Hour)) {
		t.Fatalf("progress %+v", p)
	}
}

// TestCampaignWorkOrderAndSplit: a replica's work is its share of the
// online devices on another kid, the earliest-expiring first; the
// replicas' shares do not overlap and cover every such device.
func TestCampaignWorkOrderAndSplit(t *testing.T) {
	s := writeSetup(t, `broker: {url: "tcp://127.0.0.1:1"}`, "")
	log, _ := newLogger(t)
	svcs := map[string]*Service{}
	for _, name := range []string{"issuer-a", "issuer-b", "issuer-c"} {
		svc, err := New(Options{ConfigFile: s.config, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		svc.name = name
		svcs[name] = svc
	}
	tp := wire.NewTopics("")
	cp := &wire.Campaign{V: 1, ID: "c1", To: "next", Rate: 10}
	const n = 300
	for _, svc := range svcs {
		for i := range n {
			id := fmt.Sprintf("cam-%03d", i)
			kid := "primary"
			if i%10 == 0 {
				kid = "next" // already done
			}
			st := "online"
			if i%7 == 0 {
				st = "offline"
			}
			b, _ := wire.Encode(wire.DeviceStatus{V: 1, State: st,
				Tokens: []wire.TokenStatus{{Name: "video", KID: kid, ExpiresAt: int64(10_000 - i)}}})
			svc.Fleet().Observe(tp.Status(id), b)
		}
	}
	replicas := []string{"issuer-a", "issuer-b", "issuer-c"}
	seen := map[string]string{}
	for name, svc := range svcs {
		work := svc.campaignWork(cp, replicas)
		if len(work) < n/10 {
			t.Errorf("%s has %d devices of about %d: the split is lopsided", name, len(work), n/3)
		}
		for i, d := range work {
			if i > 0 && d.EarliestExpiry() < work[i-1].EarliestExpiry() {
				t.Fatalf("%s: %s (expiry %d) after %s (%d): not earliest first", name, d.ID, d.EarliestExpiry(), work[i-1].ID, work[i-1].EarliestExpiry())
			}
			if !d.Online || !d.HoldsOther("next") {
				t.Fatalf("%s: %+v needs no push", name, d)
			}
			if other, dup := seen[d.ID]; dup {
				t.Fatalf("%s in the work of %s and %s", d.ID, other, name)
			}
			seen[d.ID] = name
		}
	}
	want := 0
	for i := range n {
		if i%10 != 0 && i%7 != 0 {
			want++
		}
	}
	if len(seen) != want {
		t.Fatalf("the replicas share %d devices, want %d", len(seen), want)
	}
}

// TestCampaignPushedSurvivesRestart: a replica restarted mid-campaign
// remembers the devices it pushed (state_dir/campaign.json) and does not
// push them again, though their statuses still show the old kid.
func TestCampaignPushedSurvivesRestart(t *testing.T) {
	m, users, brokerYAML := mosquittoEnv(t, "cam-1")
	s := writeSetup(t, brokerYAML, "")
	replaceInFile(t, s.config, "certificates: [{id: primary, file: primary.cert}]",
		"certificates: [{id: primary, file: primary.cert}, {id: next, file: next.cert}]\nactive_certificate: primary")
	log, _ := newLogger(t)
	first := startService(t, s.config, log, nil)
	cam := connectDevice(t, m.URL, "cam-1", users["cam-1"])
	publishDeviceStatus(t, cam, wire.TokenStatus{Name: "video", KID: "primary", ExpiresAt: time.Now().Add(time.Hour).Unix()})
	waitRegistry(t, first.Fleet(), func(r *Registry) bool { return r.Len() == 1 })

	cfg, err := LoadConfig(s.config)
	if err != nil {
		t.Fatal(err)
	}
	tool, err := DialTool(context.Background(), cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Disconnect(0)
	cp := NewCampaign("next", 1000, time.Now())
	if err := PublishCampaign(context.Background(), tool, cfg.Topics(), cp); err != nil {
		t.Fatal(err)
	}
	if push := cam.reply(t); !push.IsPush() {
		t.Fatalf("got %+v, want the campaign's push", push)
	}
	first.stop(t) // the device never reported its new tokens

	statuses := testbroker.Subscribe(t, tool, cfg.Topics().AllReplicas())
	second := startService(t, s.config, log, nil)
	// Once it follows the campaign its status says so.
	for {
		msg := testbroker.Receive(t, statuses, waitTimeout)
		var st wire.IssuerStatus
		if len(msg.Payload()) > 0 && wire.Decode(msg.Payload(), &st) == nil &&
			st.Issuer == second.Name() && st.Campaign == cp.ID && st.Active == "next" {
			break
		}
	}
	if got := second.CampaignPushed(); fmt.Sprint(got) != "[cam-1]" {
		t.Fatalf("after the restart the replica remembers %v pushed, want [cam-1]", got)
	}
	if work := second.campaignWork(&cp, second.Replicas()); len(work) != 0 {
		t.Fatalf("after the restart the replica would push %v again", work)
	}
}
