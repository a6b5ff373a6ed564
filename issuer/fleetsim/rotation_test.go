package fleetsim

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/clock"
	"agoratokens/internal/testbroker"
	"agoratokens/issuer"
	"agoratokens/wire"
)

const (
	nextCert = "00112233445566778899aabbccddeeff"
	// toolUser runs the campaign as `rotate` would. It is not the
	// issuer's own user: with use_username_as_clientid, a tool logged
	// in as agora-issuer would take over the issuer's connection.
	toolUser = "agora-issuer-2"
	// monitorUser reads every device topic, to count at the broker.
	monitorUser = "agora-monitor"
)

// rotationEnv is mosquitto with the shipped config and ACL (plus a
// monitor user that may read every device topic) and one issuer with two
// certificates, primary active and next added.
type rotationEnv struct {
	url        string
	seed       []byte
	svc        *issuer.Service
	toolConfig string // the issuer's config, logging in as toolUser
}

func startRotationEnv(tb testing.TB, n int, policy string) *rotationEnv {
	tb.Helper()
	// mosquitto, a process of its own, inherits the raised limit.
	if err := RaiseFileLimit(uint64(n + 256)); err != nil {
		tb.Fatal(err)
	}
	seed := bytes.Repeat([]byte{8}, seedBytes)
	dir := tb.TempDir()
	m := startShippedMosquitto(tb, dir, seed, append(simNames(n), toolUser, monitorUser),
		"user "+monitorUser, "topic read agora/v1/devices/#")
	write := func(name, content string) {
		tb.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	write("primary.cert", cert+"\n")
	write("next.cert", nextCert+"\n")
	write("policy.yaml", policy)
	write("broker-password", issuerBrokerPassword+"\n")
	write("tool-password", Secret(seed, toolUser)+"\n")
	config := func(user, passwordFile string) string {
		return "app_id: " + appID + "\n" +
			"certificates: [{id: primary, file: primary.cert}, {id: next, file: next.cert}]\nactive_certificate: primary\n" +
			fmt.Sprintf("broker:\n  url: %s\n  username: %s\n  password_file: %s\n", m.URL, user, passwordFile) +
			"share_group: issuers\npolicy_file: policy.yaml\nlimits:\n  rate: {per_minute: 60, burst: 10}\nlog_level: error\n"
	}
	write("issuer.yaml", config("agora-issuer", "broker-password"))
	write("tool.yaml", config(toolUser, "tool-password"))

	svc, err := issuer.New(issuer.Options{ConfigFile: filepath.Join(dir, "issuer.yaml"),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("issuer: %v", err)
		}
	})
	select {
	case <-svc.Started():
	case err := <-done:
		tb.Fatalf("issuer stopped: %v", err)
	case <-time.After(30 * time.Second):
		tb.Fatal("issuer did not start")
	}
	return &rotationEnv{url: m.URL, seed: seed, svc: svc, toolConfig: filepath.Join(dir, "tool.yaml")}
}

// monitorEvent is one message the monitor saw.
type monitorEvent struct {
	at     time.Time
	device string
	id     string // the request's or reply's id
}

// brokerMonitor records every message on a filter of device topics, as
// the broker delivers them to one more subscriber.
type brokerMonitor struct {
	mu      sync.Mutex
	events  []monitorEvent
	changed chan struct{} // closed at the next event
}

func startMonitor(tb testing.TB, env *rotationEnv, filter string) *brokerMonitor {
	tb.Helper()
	mon := &brokerMonitor{changed: make(chan struct{})}
	c := testbroker.Connect(tb, env.url, testbroker.ClientOptions{ClientID: monitorUser, Username: monitorUser,
		Password: Secret(env.seed, monitorUser)})
	tb.Cleanup(func() { c.Disconnect(0) })
	t := c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		at := time.Now()
		parts := strings.Split(m.Topic(), "/")
		var msg struct {
			ID string `json:"id"`
		}
		_ = wire.Decode(m.Payload(), &msg)
		mon.mu.Lock()
		mon.events = append(mon.events, monitorEvent{at: at, device: parts[len(parts)-2], id: msg.ID})
		close(mon.changed)
		mon.changed = make(chan struct{})
		mon.mu.Unlock()
	})
	if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		tb.Fatalf("monitor subscribe: %v", t.Error())
	}
	if code := t.(*mqtt.SubscribeToken).Result()[filter]; code >= 0x80 {
		tb.Fatalf("the broker refused the monitor's subscription to %s", filter)
	}
	return mon
}

// matching returns the events whose id starts with prefix.
func (m *brokerMonitor) matching(prefix string) []monitorEvent {
	evs, _ := m.matchingNext(prefix)
	return evs
}

// matchingNext is matching, with a channel closed at the next event.
func (m *brokerMonitor) matchingNext(prefix string) ([]monitorEvent, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []monitorEvent
	for _, e := range m.events {
		if strings.HasPrefix(e.id, prefix) {
			out = append(out, e)
		}
	}
	return out, m.changed
}

// perSecond counts events per whole second since from.
func perSecond(times []time.Time, from time.Time) []int {
	var out []int
	for _, t := range times {
		i := max(0, int(t.Sub(from)/time.Second))
		for len(out) <= i {
			out = append(out, 0)
		}
		out[i]++
	}
	return out
}

// spread is how a burst of events spread over time.
type spread struct {
	count      int
	first      time.Time
	span       time.Duration // first to last event
	peak       int           // events in the busiest second (from the first)
	mean       float64       // events a second over the seconds the burst touched
	peakToMean float64
}

func spreadOf(times []time.Time) spread {
	if len(times) == 0 {
		return spread{}
	}
	first, last := times[0], times[0]
	for _, t := range times {
		if t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	secs := perSecond(times, first)
	s := spread{count: len(times), first: first, span: last.Sub(first)}
	for _, n := range secs {
		s.peak = max(s.peak, n)
	}
	s.mean = float64(len(times)) / float64(len(secs))
	s.peakToMean = float64(s.peak) / s.mean
	return s
}

func eventTimes(evs []monitorEvent) []time.Time {
	out := make([]time.Time, len(evs))
	for i, e := range evs {
		out[i] = e.at
	}
	return out
}

// loadAverage is the 1-minute load average (0 where unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}

// rotationFigures is what one rotation measured.
type rotationFigures struct {
	complete     time.Duration // campaign published to rotate's "complete"
	pushes       spread        // pushes at the broker
	pushedTwice  int           // devices the monitor saw pushed more than once
	devicePushed int           // devices the monitor saw pushed
	loadBefore   float64
	loadAfter    float64
}

const rotationPolicy = `rules:
  - match: "dev-sim-*"
    tokens:
      video:  {service: rtc, channel: "{device}", uid: "{uid}", role: publisher, ttl: 1h}
      signal: {service: rtm, user: "{device}", ttl: 1h}
`

// runRotation boots n simulated devices on primary, then starts a
// campaign to next at rate as `rotate --to next --rate R --wait` does
// (the retained campaign, then the fleet's statuses followed until the
// campaign's progress is complete), and checks every device ends up on
// next, pushed once.
func runRotation(tb testing.TB, n int, rate float64) rotationFigures {
	tb.Helper()
	env := startRotationEnv(tb, n, rotationPolicy)
	mon := startMonitor(tb, env, wire.NewTopics("").Token("+"))
	ctx := context.Background()
	fleet, err := NewFleet(FleetConfig{Config: Config{BrokerURL: env.url, Devices: n, Seed: env.seed, AppID: appID,
		Logger: benchLogger(tb), Certificates: []string{cert, nextCert}, Timeout: 2*time.Minute + time.Duration(float64(n)/rate*2*float64(time.Second))}})
	if err != nil {
		tb.Fatal(err)
	}
	defer fleet.Close()
	failed, err := fleet.Boot(ctx)
	if err != nil || failed > 0 {
		tb.Fatalf("boot: %d devices failed to connect, %v", failed, err)
	}
	benchLogger(tb).Info("fleet booted on primary")
	if got := fleet.HoldingOnly("primary"); got != n {
		tb.Fatalf("%d of %d devices hold primary tokens after boot", got, n)
	}

	cfg, err := issuer.LoadConfig(env.toolConfig)
	if err != nil {
		tb.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	tool, err := issuer.DialTool(dctx, cfg, "agora-token-issuer-rotate")
	cancel()
	if err != nil {
		tb.Fatal(err)
	}
	defer tool.Disconnect(250)
	wctx, cancel := context.WithTimeout(ctx, fleet.cfg.Timeout)
	defer cancel()
	snap, err := issuer.ReadSnapshot(wctx, tool, cfg.Topics(), nil, true)
	if err != nil {
		tb.Fatal(err)
	}
	// The campaign starts once the broker holds every device's status.
	if _, err := followProgress(wctx, snap, func(p issuer.Progress) bool { return p.ToDo == n }); err != nil {
		tb.Fatalf("the fleet's statuses: %v", err)
	}

	benchLogger(tb).Info("the broker holds every device's status; starting the campaign")
	fig := rotationFigures{loadBefore: loadAverage()}
	cp := issuer.NewCampaign("next", rate, time.Now())
	start := time.Now()
	if err := issuer.PublishCampaign(wctx, tool, cfg.Topics(), cp); err != nil {
		tb.Fatal(err)
	}
	p, err := followProgress(wctx, snap, func(p issuer.Progress) bool { return p.Complete() })
	if err != nil {
		tb.Fatalf("campaign not complete: %v", err)
	}
	fig.complete = time.Since(start)
	benchLogger(tb).Info("campaign complete", "took", fig.complete, "boot retries", fleet.Stats().Retried)
	fig.loadAfter = loadAverage()
	if p.Done != n {
		tb.Fatalf("complete with %d devices done, want %d: %+v", p.Done, n, p)
	}

	// The devices' own view agrees, and each took one push.
	if err := fleet.Wait(wctx, func(st FleetStats) bool { return st.Pushes >= n }); err != nil {
		tb.Fatal(err)
	}
	st := fleet.Stats()
	if got := fleet.HoldingOnly("next"); got != n || st.Pushed != n || st.PushedTwice != 0 || len(st.Errors) != 0 {
		tb.Fatalf("%d of %d devices hold only next tokens; stats %+v", got, n, st)
	}
	// The broker delivered exactly the pushes the devices took: one per
	// device (the issuer publishes at QoS 1; a duplicate would show).
	pushes := mon.matching(wire.PushPrefix)
	if len(pushes) < n {
		if err := waitMonitor(wctx, mon, n); err != nil {
			tb.Fatal(err)
		}
		pushes = mon.matching(wire.PushPrefix)
	}
	per := map[string]int{}
	for _, e := range pushes {
		per[e.device]++
		if e.id != wire.PushPrefix+"next-"+cp.ID {
			tb.Fatalf("push %q to %s is not the campaign's", e.id, e.device)
		}
	}
	for _, c := range per {
		if c > 1 {
			fig.pushedTwice++
		}
	}
	fig.devicePushed = len(per)
	fig.pushes = spreadOf(eventTimes(pushes))
	if got := len(env.svc.CampaignPushed()); got != n {
		tb.Fatalf("the issuer pushed %d devices, want %d", got, n)
	}
	if fig.pushedTwice != 0 || fig.devicePushed != n {
		tb.Fatalf("the broker saw %d devices pushed, %d of them twice; want %d, none twice", fig.devicePushed, fig.pushedTwice, n)
	}
	return fig
}

// followProgress computes the campaign's progress as `rotate --wait`
// does, at every change of the fleet's statuses and every second (the
// replicas' statuses), until done holds.
func followProgress(ctx context.Context, snap *issuer.Snapshot, done func(issuer.Progress) bool) (issuer.Progress, error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := snap.Devices.Changed()
		p := issuer.CampaignProgress("next", snap.Devices.Snapshot(), snap.ReplicaStatuses(), snap.LatestExpiry(nil), time.Now())
		if done(p) {
			return p, nil
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-ctx.Done():
			return p, fmt.Errorf("%w: %d done, %d to do, replicas behind %v", ctx.Err(), p.Done, p.ToDo, p.Behind)
		}
	}
}

// waitMonitor waits until the monitor has seen n pushes (they reach
// the devices and the monitor in either order).
func waitMonitor(ctx context.Context, mon *brokerMonitor, n int) error {
	return waitRequests(ctx, mon, wire.PushPrefix, n)
}

// waitRequests waits until the monitor has seen n messages whose id
// starts with prefix.
func waitRequests(ctx context.Context, mon *brokerMonitor, prefix string, n int) error {
	for {
		evs, next := mon.matchingNext(prefix)
		if len(evs) >= n {
			return nil
		}
		select {
		case <-next:
		case <-ctx.Done():
			return fmt.Errorf("the monitor saw %d messages %s…, want %d: %w", len(evs), prefix, n, ctx.Err())
		}
	}
}

// TestFleetRotation: 20 simulated devices on primary; a campaign to next
// completes, every device holds only next tokens and the broker
// delivered one push to each.
func TestFleetRotation(t *testing.T) {
	fig := runRotation(t, 20, 1000)
	t.Logf("complete in %v, %d pushes, peak %d/s", fig.complete, fig.pushes.count, fig.pushes.peak)
	if fig.complete <= 0 || fig.pushes.count != 20 {
		t.Fatalf("figures %+v", fig)
	}
}

// TestFleetRenewsOnInjectedClock: devices renew at their drawn points
// of the token's life, on the fleet's clock: nothing is asked before the
// window opens, every device asks once the window has passed.
func TestFleetRenewsOnInjectedClock(t *testing.T) {
	const n = 10
	env := startRotationEnv(t, n, renewalPolicy("1h"))
	mon := startMonitor(t, env, wire.NewTopics("").Req("+"))
	clk := clock.NewFake(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	fleet, err := NewFleet(FleetConfig{Config: Config{BrokerURL: env.url, Devices: n, Seed: env.seed, AppID: appID,
		Timeout: 24 * time.Hour, Clock: clk}, Renewals: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if failed, err := fleet.Boot(ctx); err != nil || failed > 0 {
		t.Fatalf("boot: %d failed, %v", failed, err)
	}
	if err := clk.WaitTimers(ctx, n); err != nil {
		t.Fatalf("renewal timers: %v", err)
	}
	for _, d := range clk.Pending() {
		if d < 36*time.Minute || d > 48*time.Minute {
			t.Fatalf("renewal in %v, want within 60%%..80%% of the hour", d)
		}
	}
	if st := fleet.Stats(); st.Renewed != 0 {
		t.Fatalf("%d renewals before the clock moved", st.Renewed)
	}
	clk.Advance(48 * time.Minute)
	if err := fleet.Wait(ctx, func(st FleetStats) bool { return st.Renewed == n }); err != nil {
		t.Fatal(err)
	}
	if st := fleet.Stats(); len(st.Errors) != 0 || st.Holding != n {
		t.Fatalf("stats %+v", st)
	}
	if _, renewals := fleet.Times(); len(renewals) != n {
		t.Fatalf("%d renewals sent, want one per device", len(renewals))
	}
	if err := waitRequests(ctx, mon, "renew-", n); err != nil {
		t.Fatal(err)
	}
}

func TestRenewalPoint(t *testing.T) {
	w := [2]float64{0.6, 0.8}
	for _, tc := range []struct {
		name                   string
		u                      float64
		lifetime, before, want time.Duration
	}{
		{"window start", 0, time.Hour, 30 * time.Second, 36 * time.Minute},
		{"window middle", 0.5, time.Hour, 30 * time.Second, 42 * time.Minute},
		{"window end", 1, time.Hour, 30 * time.Second, 48 * time.Minute},
		{"60s tokens, renew_before 10s: unscaled", 0, time.Minute, 10 * time.Second, 36 * time.Second},
		{"60s tokens, renew_before 10s: end", 1, time.Minute, 10 * time.Second, 48 * time.Second},
		// latest renewal 30s: the window [36s, 48s] scales to [22.5s, 30s].
		{"60s tokens, renew_before 30s: scaled start", 0, time.Minute, 30 * time.Second, 22500 * time.Millisecond},
		{"60s tokens, renew_before 30s: scaled end", 1, time.Minute, 30 * time.Second, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RenewalPoint(tc.u, w, tc.lifetime, tc.before); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func renewalPolicy(ttl string) string {
	return `rules:
  - match: "dev-sim-*"
    tokens:
      video:  {service: rtc, channel: "{device}", uid: "{uid}", role: publisher, ttl: ` + ttl + "}\n"
}

// benchLogger logs a benchmark's progress to stderr (a long run shows
// where it is); tests log nothing.
func benchLogger(tb testing.TB) *slog.Logger {
	if _, ok := tb.(*testing.B); !ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// rotationDevices is ROTATION_DEVICES (default 1000).
func rotationDevices(b *testing.B) int {
	n := 1000
	if v := os.Getenv("ROTATION_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("ROTATION_DEVICES=%q is not a positive number", v)
		}
	}
	return n
}

// BenchmarkFleetRotation rotates ROTATION_DEVICES (default 1000)
// simulated devices from primary to next at the default campaign rate,
// through mosquitto (the shipped config and ACL) and one issuer, and
// reports the time until `rotate --wait` would say complete, the pushes
// a second at the broker (peak and mean) and devices pushed twice. Run
// it with -benchtime=1x.
func BenchmarkFleetRotation(b *testing.B) {
	n := rotationDevices(b)
	for b.Loop() {
		fig := runRotation(b, n, issuer.DefaultCampaignRate)
		b.ReportMetric(fig.complete.Seconds(), "complete-s")
		b.ReportMetric(float64(fig.pushes.peak), "peak-pushes/s")
		b.ReportMetric(fig.pushes.mean, "mean-pushes/s")
		b.ReportMetric(float64(fig.devicePushed), "devices-pushed")
		b.ReportMetric(float64(fig.pushedTwice), "pushed-twice")
		b.ReportMetric(fig.loadBefore, "load1-before")
		b.ReportMetric(fig.loadAfter, "load1-after")
	}
}

// BenchmarkFleetRenewalSpread boots ROTATION_DEVICES (default 1000)
// simulated devices at once with RENEWAL_TTL (default 60s) tokens; each
// renews once at its drawn point of the token's life (renew_window
// 0.6..0.8, renew_before 10s so that the window is not scaled down) and
// the requests are counted a second at the broker: the boot storm's
// busiest second, and the renewal cycle's busiest second against its
// mean. Run it with -benchtime=1x.
func BenchmarkFleetRenewalSpread(b *testing.B) {
	n := rotationDevices(b)
	ttl := time.Minute
	if v := os.Getenv("RENEWAL_TTL"); v != "" {
		var err error
		if ttl, err = time.ParseDuration(v); err != nil || ttl < 10*time.Second || ttl%time.Second != 0 {
			b.Fatalf("RENEWAL_TTL=%q is not whole seconds of at least 10s", v)
		}
	}
	for b.Loop() {
		env := startRotationEnv(b, n, renewalPolicy(ttl.String()))
		mon := startMonitor(b, env, wire.NewTopics("").Req("+"))
		fleet, err := NewFleet(FleetConfig{Config: Config{BrokerURL: env.url, Devices: n, Seed: env.seed, AppID: appID,
			Logger: benchLogger(b), Timeout: 2*ttl + 2*time.Minute}, Renewals: 1, RenewBefore: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		load := loadAverage()
		if failed, err := fleet.Boot(ctx); err != nil || failed > 0 {
			b.Fatalf("boot: %d failed, %v", failed, err)
		}
		if err := fleet.Wait(ctx, func(st FleetStats) bool { return st.Renewed == n }); err != nil {
			b.Fatal(err)
		}
		st := fleet.Stats()
		fleet.Close()
		if len(st.Errors) != 0 {
			b.Fatalf("errors %v", st.Errors)
		}
		boot := spreadOf(eventTimes(mon.matching("boot-")))
		renew := spreadOf(eventTimes(mon.matching("renew-")))
		// Requests asked again (a refusal's retry_after, or no reply
		// within the request timeout) are counted in the figures: the
		// broker carried them.
		if boot.count < n || renew.count < n {
			b.Fatalf("the broker saw %d boot and %d renewal requests, want at least %d each", boot.count, renew.count, n)
		}
		b.ReportMetric(float64(boot.count-n), "boot-retried")
		b.ReportMetric(float64(renew.count-n), "renew-retried")
		b.ReportMetric(float64(boot.peak), "boot-peak/s")
		b.ReportMetric(boot.span.Seconds(), "boot-span-s")
		b.ReportMetric(renew.first.Sub(boot.first).Seconds(), "renew-start-s")
		b.ReportMetric(renew.span.Seconds(), "renew-span-s")
		b.ReportMetric(float64(renew.peak), "renew-peak/s")
		b.ReportMetric(renew.mean, "renew-mean/s")
		b.ReportMetric(renew.peakToMean, "peak/mean")
		b.ReportMetric(load, "load1-before")
		b.ReportMetric(loadAverage(), "load1-after")
	}
}
