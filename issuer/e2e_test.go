package issuer

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"agoratokens/clock"
	"agoratokens/internal/testbroker"
	"agoratokens/secretfile"
	"agoratokens/wire"
)

var e2eDevices = []string{"cam-1", "cam-2", "cam-3", "cam-4", "toaster-1", "cam-stolen-1"}

// startEnv runs an issuer against a broker of the given kind and returns
// it, the broker URL and the devices' passwords.
func startEnv(t *testing.T, kind, extra string, clk clock.Clock) (*running, string, map[string]string) {
	t.Helper()
	log, _ := newLogger(t)
	switch kind {
	case "mosquitto":
		m, users, brokerYAML := mosquittoEnv(t, e2eDevices...)
		s := writeSetup(t, brokerYAML, extra)
		return startService(t, s.config, log, clk), m.URL, users
	case "embedded":
		s := writeSetup(t, `broker: {embedded: {listen: "127.0.0.1:0", credentials_file: devices.yaml}}`, extra)
		secrets := writeCredentials(t, filepath.Join(s.dir, "devices.yaml"), e2eDevices...)
		r := startService(t, s.config, log, clk)
		return r, "tcp://" + r.BrokerAddr(), secrets
	}
	t.Fatalf("unknown broker kind %q", kind)
	return nil, "", nil
}

func TestIssuerEndToEnd(t *testing.T) {
	for _, kind := range []string{"mosquitto", "embedded"} {
		t.Run(kind, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1_763_800_000, 0))
			r, url, pw := startEnv(t, kind, "limits: {rate: {per_minute: 6, burst: 3}}", clk)
			dev := func(id string) *device { return connectDevice(t, url, id, pw[id]) }
			cam1, cam2 := dev("cam-1"), dev("cam-2")
			verifier, err := NewSigner(testAppID, []Certificate{{ID: "primary", Value: secretfile.NewSecret(testCert)}}, "primary", nil)
			if err != nil {
				t.Fatal(err)
			}

			t.Run("device gets its tokens", func(t *testing.T) {
				clk.Advance(time.Minute)
				rep := cam1.request(t, "r-1")
				if rep.Error != nil || rep.ID != "r-1" || len(rep.Tokens) != 2 || rep.IssuedAt != clk.Wall().Unix() {
					t.Fatalf("reply %+v error %+v", rep, rep.Error)
				}
				want, _ := mustPolicy(t, testPolicy).Grants("cam-1", nil)
				for i, g := range rep.Tokens {
					w := want[i]
					tok, kid, err := verifier.Verify(g.Token)
					if err != nil || kid != "primary" || g.KID != "primary" {
						t.Fatalf("%s: verify: kid %q/%q %v", g.Name, kid, g.KID, err)
					}
					checkToken(t, tok, w)
					if g.Name != w.Name || g.Channel != w.Channel || g.UID != w.UID || g.User != w.User ||
						g.TTL != int64(w.TTL/time.Second) || g.ExpiresAt != g.IssuedAt+g.TTL {
						t.Errorf("grant %+v does not match policy %+v", g, w)
					}
				}
				if rep.Tokens[1].UID != strconv.FormatUint(uint64(DeviceUID("cam-1")), 10) || rep.Tokens[1].Channel != "cam-cam-1" {
					t.Errorf("video grant %+v", rep.Tokens[1])
				}
			})

			t.Run("device A cannot reach device B", func(t *testing.T) {
				clk.Advance(time.Minute)
				// The embedded broker refuses the subscription; mosquitto
				// grants it to an MQTT 3.1.1 client but delivers nothing.
				spy, _, err := testbroker.TrySubscribe(t, cam1.c, cam1.topics.Token("cam-2"))
				if err != nil {
					t.Fatal(err)
				}
				// The broker drops cam-1's publish on cam-2's topic (mosquitto
				// acknowledges and drops it, the embedded broker disconnects the
				// client, both allowed by MQTT 3.1.1), so a second connection
				// of cam-1 tries it; cam-1's own request, sent after it, proves
				// the issuer got nothing.
				intruder := testbroker.Connect(t, url, testbroker.ClientOptions{ClientID: "cam-1:intruder", Username: "cam-1", Password: pw["cam-1"]})
				intruder.Publish(cam1.topics.Req("cam-2"), 1, false, []byte(`{"v":1,"id":"steal"}`)).WaitTimeout(waitTimeout)
				if rep := cam1.request(t, "r-2", "video"); rep.Error != nil {
					t.Fatalf("cam-1's own request: %+v", rep.Error)
				}
				select {
				case m := <-cam2.replies:
					t.Fatalf("cam-2 got a reply it never asked for: %s", m.Payload())
				default:
				}
				if rep := cam2.request(t, "mine"); rep.Error != nil {
					t.Fatalf("cam-2: %+v", rep.Error)
				}
				if rep := cam1.request(t, "r-2b", "video"); rep.Error != nil {
					t.Fatalf("cam-1's own request: %+v", rep.Error)
				}
				select {
				case m := <-spy:
					t.Fatalf("cam-1 received cam-2's tokens: %s", m.Payload())
				default:
				}
				if seen := counterValue(t, r.metrics.requests.WithLabelValues("mqtt", resultOK)); seen != 4 {
					t.Fatalf("the issuer served %v requests, want 4: it handled cam-1's publish on cam-2's topic", seen)
				}
			})

			t.Run("policy refuses", func(t *testing.T) {
				clk.Advance(time.Minute)
				wantError(t, cam1.request(t, "r-3", "doorbell"), "r-3", wire.CodeForbidden)
				wantError(t, dev("toaster-1").request(t, "t-1"), "t-1", wire.CodeForbidden)
				wantError(t, dev("cam-stolen-1").request(t, "s-1"), "s-1", wire.CodeForbidden)
			})

			t.Run("malformed requests get invalid_request", func(t *testing.T) {
				clk.Advance(time.Minute)
				for _, tc := range []struct{ payload, id string }{
					{"not json", "unknown"},
					{`{"v":2,"id":"future"}`, "future"},
					{`{"v":1}`, "unknown"},
					{`{"v":1,"id":"u-1","tokens":["teleport"]}`, "u-1"},
					{`{"v":1,"id":"u-2","tokens":"video"}`, "u-2"},
					{`{"v":1,"id":"big","pad":"` + strings.Repeat("x", 20<<10) + `"}`, "unknown"},
				} {
					// Malformed requests count against the rate limit
					// (6 a minute) like any other.
					clk.Advance(10 * time.Second)
					cam2.send(t, []byte(tc.payload))
					wantError(t, cam2.reply(t), tc.id, wire.CodeInvalidRequest)
				}
				clk.Advance(10 * time.Second)
				if rep := cam2.request(t, "ok-1", "signal"); rep.Error != nil || len(rep.Tokens) != 1 {
					t.Fatalf("the issuer stopped serving after bad requests: %+v", rep.Error)
				}
			})

			t.Run("rate limit", func(t *testing.T) {
				clk.Advance(time.Minute)
				cam3 := dev("cam-3")
				for i := range 3 {
					if rep := cam3.request(t, fmt.Sprintf("b-%d", i)); rep.Error != nil {
						t.Fatalf("request %d within the burst: %+v", i, rep.Error)
					}
				}
				rep := cam3.request(t, "b-3")
				wantError(t, rep, "b-3", wire.CodeRateLimited)
				if rep.Error.RetryAfter != 10 {
					t.Errorf("retry_after %d, want 10 (6 a minute)", rep.Error.RetryAfter)
				}
				clk.Advance(10 * time.Second)
				if rep := cam3.request(t, "b-4"); rep.Error != nil {
					t.Fatalf("after retry_after: %+v", rep.Error)
				}
				if n := counterValue(t, r.metrics.rateLimited); n != 1 {
					t.Errorf("rate-limited metric %v, want 1", n)
				}
			})

			t.Run("idempotent retry", func(t *testing.T) {
				clk.Advance(time.Minute)
				cam4 := dev("cam-4")
				first := cam4.request(t, "same")
				again := cam4.request(t, "same")
				other := cam4.request(t, "other")
				if first.Error != nil || again.Error != nil || other.Error != nil {
					t.Fatal("a request failed")
				}
				if first.Tokens[0].Token != again.Tokens[0].Token {
					t.Fatal("a retry with the same id was signed again")
				}
				if first.Tokens[0].Token == other.Tokens[0].Token {
					t.Fatal("a new request id got the old token")
				}
				if n := counterValue(t, r.metrics.requests.WithLabelValues("mqtt", resultReplayed)); n != 1 {
					t.Errorf("replayed metric %v, want 1", n)
				}
			})
		})
	}
}

// TestReloadPushIsPaced: a certificate activated by SIGHUP reaches every
// device seen, DefaultCampaignRate devices a second: the second device's
// push waits on the pace, not on the first's.
func TestReloadPushIsPaced(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	s := writeSetup(t, `broker: {embedded: {listen: "127.0.0.1:0", credentials_file: devices.yaml}}`, "")
	ids := []string{"cam-1", "cam-2", "cam-3"}
	secrets := writeCredentials(t, filepath.Join(s.dir, "devices.yaml"), ids...)
	log, _ := newLogger(t)
	r := startService(t, s.config, log, clk)
	var devs []*device
	for i, id := range ids {
		d := connectDevice(t, "tcp://"+r.BrokerAddr(), id, secrets[id])
		if rep := d.request(t, "boot-"+strconv.Itoa(i)); rep.Error != nil {
			t.Fatalf("%s: %+v", id, rep.Error)
		}
		devs = append(devs, d)
	}
	replaceInFile(t, s.config, "certificates: [{id: primary, file: primary.cert}]",
		"certificates: [{id: primary, file: primary.cert}, {id: next, file: next.cert}]\nactive_certificate: next")
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	pace := time.Second / DefaultCampaignRate
	for i, d := range devs {
		if i > 0 {
			// The pusher waits on the pace; nothing for this device yet.
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			for !slices.Contains(clk.Pending(), pace) {
				if err := clk.WaitTimers(ctx, clk.Timers()+1); err != nil {
					t.Fatalf("no pacing timer of %v armed: pending %v", pace, clk.Pending())
				}
			}
			cancel()
			select {
			case m := <-d.replies:
				t.Fatalf("%s got %s before its turn", d.id, m.Payload())
			default:
			}
			clk.Advance(pace)
		}
		if push := d.reply(t); !push.IsPush() || push.Tokens[0].KID != "next" {
			t.Fatalf("%s: %+v, want a push of next", d.id, push)
		}
	}
}

func TestIssuerStatusAndShutdown(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	r, url, pw := startEnv(t, "mosquitto", "", clk)
	watcher := testbroker.Connect(t, url, testbroker.ClientOptions{Username: issuerUser, Password: pw[issuerUser]})
	status := testbroker.Subscribe(t, watcher, wire.NewTopics("").IssuerStatus())
	var st wire.IssuerStatus
	if err := wire.Decode(testbroker.Receive(t, status, waitTimeout).Payload(), &st); err != nil || st.State != wire.StateOnline || st.Issuer != r.Name() {
		t.Fatalf("retained status %+v (%v), want online from %s", st, err, r.Name())
	}
	r.stop(t) // what SIGTERM does
	if err := wire.Decode(testbroker.Receive(t, status, waitTimeout).Payload(), &st); err != nil || st.State != wire.StateOffline {
		t.Fatalf("status after stop %+v (%v), want offline", st, err)
	}
}

func TestReplicasShareLoadAndSurviveAKill(t *testing.T) {
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("cam-r%d", i)
	}
	m, users, _ := mosquittoEnv(t, ids...)
	cut := startProxy(t, m.Addr)
	logA, _ := newLogger(t)
	logB, _ := newLogger(t)
	broker := func(addr, id string) string {
		return fmt.Sprintf("broker: {url: \"tcp://%s\", client_id: %s, username: %s, password_file: broker.password}\nshare_group: issuers", addr, id, issuerUser)
	}
	a := startService(t, writeSetup(t, broker(cut.addr(), "replica-a"), "").config, logA, nil)
	b := startService(t, writeSetup(t, broker(m.Addr, "replica-b"), "").config, logB, nil)

	devs := make([]*device, n)
	for i, id := range ids {
		devs[i] = connectDevice(t, m.URL, id, users[id])
	}
	// Every device asks once; both replicas get a share.
	for i, d := range devs {
		if rep := d.request(t, "boot-"+strconv.Itoa(i)); rep.Error != nil {
			t.Fatalf("%s: %+v", d.id, rep.Error)
		}
	}
	okA := counterValue(t, a.metrics.requests.WithLabelValues("mqtt", resultOK))
	okB := counterValue(t, b.metrics.requests.WithLabelValues("mqtt", resultOK))
	if okA+okB != n || okA == 0 || okB == 0 {
		t.Fatalf("replicas served %v and %v of %d requests; want a split", okA, okB, n)
	}

	// Kill replica A's connection while a burst of requests is on its
	// way: the broker drops what it had sent to A. Devices retry with
	// the same request id after a timeout, as the agent does, and B
	// answers every one.
	for _, d := range devs {
		b, _ := wire.Encode(wire.Request{V: 1, ID: "again"})
		d.send(t, b)
	}
	cut.cut()
	retried := 0
	for _, d := range devs {
		select {
		case msg := <-d.replies:
			if rep, err := wire.DecodeReply(msg.Payload()); err != nil || rep.Error != nil || rep.ID != "again" {
				t.Fatalf("%s: reply %s (%v)", d.id, msg.Payload(), err)
			}
		case <-time.After(time.Second): // the agent's retry timeout
			retried++
			if rep := d.request(t, "again"); rep.Error != nil {
				t.Fatalf("%s: retry: %+v", d.id, rep.Error)
			}
		}
	}
	t.Logf("after killing a replica: %d of %d requests needed a retry", retried, n)

	// A's last will said offline; B, still serving, says online again.
	watcher := testbroker.Connect(t, m.URL, testbroker.ClientOptions{Username: issuerUser, Password: issuerPass})
	status := testbroker.Subscribe(t, watcher, wire.NewTopics("").IssuerStatus())
	deadline := time.After(waitTimeout)
	for {
		var st wire.IssuerStatus
		select {
		case msg := <-status:
			if err := wire.Decode(msg.Payload(), &st); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("the issuer status did not return to online from replica-b")
		}
		if st.State == wire.StateOnline && st.Issuer == "replica-b" {
			break
		}
	}
}

func TestReloadAndRotation(t *testing.T) {
	s := writeSetup(t, `broker: {embedded: {listen: "127.0.0.1:0", credentials_file: devices.yaml}}`, "")
	secrets := writeCredentials(t, filepath.Join(s.dir, "devices.yaml"), "cam-1")
	log, logs := newLogger(t)
	r := startService(t, s.config, log, nil)
	cam := connectDevice(t, "tcp://"+r.BrokerAddr(), "cam-1", secrets["cam-1"])
	wantError(t, cam.request(t, "q-1", "snapshot"), "q-1", wire.CodeInvalidRequest)

	// A policy with a new token, reloaded.
	policy := filepath.Join(s.dir, "policy.yaml")
	replaceInFile(t, policy, "      signal:", "      snapshot: {service: rtm, user: \"snap-{device}\"}\n      signal:")
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rep := cam.request(t, "q-2", "snapshot"); rep.Error != nil || rep.Tokens[0].User != "snap-cam-1" {
		t.Fatalf("after reload: %+v", rep.Error)
	}

	// A broken policy: the reload fails, the old one keeps serving.
	replaceInFile(t, policy, "service: rtm", "service: telex")
	if err := r.Reload(t.Context()); err == nil || !strings.Contains(err.Error(), "telex") {
		t.Fatalf("reload of a broken policy: %v", err)
	}
	if !strings.Contains(logs.String(), "keeping the previous config") {
		t.Error("the failed reload was not logged")
	}
	if rep := cam.request(t, "q-3", "snapshot"); rep.Error != nil {
		t.Fatalf("after a failed reload: %+v", rep.Error)
	}
	replaceInFile(t, policy, "service: telex", "service: rtm")

	// Rotation: a second certificate becomes active; the device gets
	// fresh tokens pushed, signed with it.
	replaceInFile(t, s.config, "certificates: [{id: primary, file: primary.cert}]",
		"certificates: [{id: primary, file: primary.cert}, {id: next, file: next.cert}]\nactive_certificate: next")
	if err := r.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	push := cam.reply(t)
	if !push.IsPush() || push.Error != nil || len(push.Tokens) != 3 {
		t.Fatalf("push %+v", push)
	}
	for _, g := range push.Tokens {
		if _, kid, err := r.state.Load().signer.Verify(g.Token); err != nil || kid != "next" || g.KID != "next" {
			t.Fatalf("pushed %s: kid %q/%q %v", g.Name, kid, g.KID, err)
		}
	}
	if !bytes.Contains([]byte(push.ID), []byte("next")) {
		t.Errorf("push id %q does not name the certificate", push.ID)
	}
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
