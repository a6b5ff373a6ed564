package faults

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/internal/faultproxy"
	"agoratokens/internal/testbroker"
	"agoratokens/issuer/devices"
)

// Agent settings every scenario uses. They are what the grace is made of
// (see grace), kept short so that a scenario runs in seconds.
const (
	agentBackoffMax     = 2 * time.Second
	agentRequestTimeout = 2 * time.Second
	agentKeepalive      = 5 * time.Second
	// issuerReconnectMax is the issuer's broker reconnection cap
	// (issuer/service.go: SetMaxReconnectInterval).
	issuerReconnectMax = 5 * time.Second
)

// grace is the time the system is given, once every component a camera
// depends on is up again, to renew a token: the issuer's reconnection
// (at most issuerReconnectMax), the agent's (at most backoff.max), a
// request lost in between (request_timeout, then a retry after at most
// backoff.max) and a second for the round trip and the start of a
// process. docs/reliability.md defines "reachable" with it.
const grace = issuerReconnectMax + agentRequestTimeout + 2*agentBackoffMax + time.Second

// fleetOptions shapes a fleet in miniature.
type fleetOptions struct {
	// Agents is how many agents run (dev-1 … dev-N).
	Agents int
	// Spare devices are registered with the broker and the issuer's
	// policy but run no agent (a raw MQTT client uses their login).
	Spare []string
	// TTL is every token's lifetime; RenewBefore the agents' setting.
	TTL, RenewBefore time.Duration
	// Embedded runs the issuer's embedded broker instead of mosquitto.
	Embedded bool
	// LogLevel of both binaries (default debug).
	LogLevel string
	// Keepalive is the agents' MQTT keepalive (default agentKeepalive).
	Keepalive time.Duration
}

// fleet is the issuer, a broker, agents with a fault proxy each in front
// of the broker, and a watch client on every agent's socket.
type fleet struct {
	t     *testing.T
	opts  fleetOptions
	dir   string
	tl    *timeline
	start time.Time

	appID    string
	cert     string            // the App Certificate, never logged
	devices  map[string]string // device id → broker password
	mosq     *testbroker.Mosquitto
	brokerAt string // host:port of the broker
	issuer   *daemon
	agents   []*agentProc
}

// agentProc is one camera: its agent process, the proxy on its path to
// the broker, and its media client.
type agentProc struct {
	id    string
	dir   string
	sock  string
	d     *daemon
	proxy *faultproxy.Proxy
	w     *watcher
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newFleet writes every config, starts the broker and the issuer, then
// the agents and their watch clients. Cleanup stops everything and checks
// that no process crashed and no secret reached a log.
func newFleet(t *testing.T, opts fleetOptions) *fleet {
	t.Helper()
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.Keepalive == 0 {
		opts.Keepalive = agentKeepalive
	}
	f := &fleet{t: t, opts: opts, dir: t.TempDir(), tl: &timeline{}, appID: randomHex(t, 16), cert: randomHex(t, 16), devices: map[string]string{}}
	f.start = wallNow()
	// Registered first, so it runs last: after every process stopped.
	t.Cleanup(f.finish)
	var ids []string
	for i := 1; i <= opts.Agents; i++ {
		ids = append(ids, fmt.Sprintf("dev-%d", i))
	}
	for _, id := range append(ids, opts.Spare...) {
		f.devices[id] = randomHex(t, 16)
	}
	t.Logf("fleet: %d agents, ttl %v, renew_before %v, grace %v, embedded broker %v", opts.Agents, opts.TTL, opts.RenewBefore, grace, opts.Embedded)
	f.writeIssuer()
	f.issuer.start()
	f.waitIssuerServing(0)
	for _, id := range ids {
		f.agents = append(f.agents, f.newAgent(id))
	}
	for _, a := range f.agents {
		a.d.start()
	}
	return f
}

// writeIssuer writes the issuer's files and, for an external broker,
// starts mosquitto with the shipped ACL.
func (f *fleet) writeIssuer() {
	t := f.t
	dir := filepath.Join(f.dir, "issuer")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "primary.cert"), f.cert+"\n")
	ttl := f.opts.TTL.String()
	writeFile(t, filepath.Join(dir, "policy.yaml"), `rules:
  - match: "dev-*"
    tokens:
      video:  {service: rtc, channel: "cam-{device}", uid: "{uid}", role: publisher, ttl: `+ttl+`}
      signal: {service: rtm, user: "{device}", ttl: `+ttl+`}
`)
	var broker string
	if f.opts.Embedded {
		creds := devices.New()
		for id, pw := range f.devices {
			if err := creds.AddSecret(id, pw); err != nil {
				t.Fatal(err)
			}
		}
		if err := creds.Save(filepath.Join(dir, "devices.yaml")); err != nil {
			t.Fatal(err)
		}
		f.brokerAt = fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t))
		broker = "broker:\n  embedded:\n    listen: " + f.brokerAt + "\n    credentials_file: devices.yaml\n"
	} else {
		users := map[string]string{"agora-issuer": randomHex(t, 16)}
		for id, pw := range f.devices {
			users[id] = pw
		}
		acl, err := filepath.Abs(filepath.Join("..", "..", "configs", "mosquitto", "acl"))
		if err != nil {
			t.Fatal(err)
		}
		f.mosq = testbroker.StartMosquitto(t, testbroker.MosquittoOptions{Users: users, ACLFile: acl, Persistence: true})
		f.brokerAt = f.mosq.Addr
		f.tl.set(compBroker, true, "mosquitto started")
		writeFile(t, filepath.Join(dir, "broker.pw"), users["agora-issuer"]+"\n")
		broker = "broker:\n  url: " + f.mosq.URL + "\n  username: agora-issuer\n  password_file: broker.pw\n"
		t.Cleanup(func() {
			if strings.Contains(f.mosq.Log(), f.cert) {
				t.Error("mosquitto's log holds the App Certificate")
			}
		})
	}
	cfg := filepath.Join(dir, "issuer.yaml")
	writeFile(t, cfg, fmt.Sprintf(`app_id: %s
certificates:
  - {id: primary, file: primary.cert}
active_certificate: primary
%stopic_root: agora/v1
policy_file: policy.yaml
limits:
  max_ttl: 1h
  rate: {per_minute: 600, burst: 100}
log_level: %s
`, f.appID, broker, f.opts.LogLevel))
	comps := []string{compIssuer}
	if f.opts.Embedded {
		comps = append(comps, compBroker) // the broker lives and dies with the issuer
	}
	f.issuer = newDaemon(t, f.tl, "issuer", comps, issuerBin, "serve", "--config", cfg)
}

// newAgent writes an agent's config, its password and a fault proxy to
// the broker in front of it, and starts its watch client (which connects
// once the agent listens).
func (f *fleet) newAgent(id string) *agentProc {
	t := f.t
	a := &agentProc{id: id, dir: filepath.Join(f.dir, id)}
	if err := os.Mkdir(a.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(f.brokerAt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	a.proxy = p
	f.tl.set(pathComp(id), true, id+": path to the broker open")
	a.sock = filepath.Join(a.dir, "agent.sock")
	writeFile(t, filepath.Join(a.dir, "password"), f.devices[id]+"\n")
	cfg := filepath.Join(a.dir, "agent.yaml")
	writeFile(t, cfg, fmt.Sprintf(`device_id: %s
broker:
  url: tcp://%s
  password_file: password
  keepalive: %s
topic_root: agora/v1
renew_before: %s
# The scenarios time their faults on will_expire: renewing exactly at
# its point (half the life, which is renew_before here) makes every
# renewal start with a will_expire, as the SDK's callback would.
renew_window: [0.5, 0.5]
renew_min_interval: 1s
backoff: {initial: 200ms, max: %s, multiplier: 2, jitter: 0.2}
request_timeout: %s
state_dir: state
socket: {path: %s, mode: "0600"}
log_level: %s
`, id, p.Addr(), f.opts.Keepalive, f.opts.RenewBefore, agentBackoffMax, agentRequestTimeout, a.sock, f.opts.LogLevel))
	a.d = newDaemon(t, f.tl, id, []string{agentComp(id)}, agentBin, "run", "--config", cfg)
	a.w = startWatcher(t, id, a.sock)
	return a
}

// waitIssuerServing waits until the issuer's log says it serves for the
// n+1-th time (once per connection to the broker).
func (f *fleet) waitIssuerServing(n int) {
	f.t.Helper()
	f.issuer.waitLog(f.t, 30*time.Second, func(log string) bool {
		return strings.Count(log, `msg="connected and serving"`) > n
	})
}

// servings counts the issuer's "connected and serving" lines so far.
func (f *fleet) servings() int {
	return strings.Count(f.issuer.log.String(), `msg="connected and serving"`)
}

// agent returns the camera with id.
func (f *fleet) agent(id string) *agentProc {
	for _, a := range f.agents {
		if a.id == id {
			return a
		}
	}
	f.t.Fatalf("no agent %s", id)
	return nil
}

// waitAllTokens waits until every watch client holds both tokens.
func (f *fleet) waitAllTokens(timeout time.Duration) {
	f.t.Helper()
	for _, a := range f.agents {
		for _, name := range []string{"video", "signal"} {
			a.w.waitToken(f.t, 0, name, timeout)
		}
	}
}

// Faults. Each records itself on the timeline before it acts, so that
// the checker never requires a token during a fault's first instant.

func (f *fleet) stopBroker() {
	f.tl.set(compBroker, false, "mosquitto stopped (killed)")
	f.mosq.Stop()
}

func (f *fleet) startBroker() {
	f.mosq.Restart()
	f.tl.set(compBroker, true, "mosquitto running again")
}

func (a *agentProc) cut(tl *timeline, how string) {
	tl.set(pathComp(a.id), false, a.id+": path "+how)
	switch how {
	case "blackholed":
		a.proxy.Blackhole()
	case "refused":
		a.proxy.Refuse(true)
		a.proxy.Reset()
	default:
		panic("unknown cut " + how)
	}
}

func (a *agentProc) restore(tl *timeline) {
	a.proxy.Restore()
	tl.set(pathComp(a.id), true, a.id+": path restored")
}

// reset sends a RST on every connection of the agent's path: a fault
// that ends as it happens.
func (a *agentProc) reset(tl *timeline) {
	tl.blip(pathComp(a.id), a.id+": every connection reset")
	a.proxy.Reset()
}

// verdict runs the checker over everything recorded so far.
func (f *fleet) verdict() verdict {
	end := wallNow()
	in := judgeInput{Start: f.start, End: end, Grace: grace, Changes: f.tl.snapshot(), Certs: []string{f.cert}}
	for _, a := range f.agents {
		in.Cameras = append(in.Cameras, camera{Device: a.id, Names: []string{"video", "signal"}, Record: a.w.record(), Log: parseLog(a.d.log.String())})
	}
	return judge(in)
}

// assertPromise fails the test unless the checker found nothing, and
// logs the summary and the timeline either way.
func (f *fleet) assertPromise() verdict {
	f.t.Helper()
	v := f.verdict()
	f.t.Logf("promise: %s", v.summary(f.start))
	if !v.ok() {
		f.t.Errorf("the promise was broken: %s\ntimeline:\n%s", v.summary(f.start), describe(f.tl.snapshot(), f.start))
		for _, a := range f.agents {
			f.t.Logf("%s watch record (last 30 lines):\n%s", a.id, a.w.lastLines(30))
		}
	}
	return v
}

// finish checks, once every process has stopped, that no log holds a
// secret: the App Certificate, a broker password or a token (every
// AccessToken2 starts with "007eJ", the version and a zlib header).
func (f *fleet) finish() {
	secrets := []string{f.cert}
	for _, pw := range f.devices {
		secrets = append(secrets, pw)
	}
	var logs []*daemon
	if f.issuer != nil {
		logs = append(logs, f.issuer)
	}
	for _, a := range f.agents {
		logs = append(logs, a.d)
	}
	for _, d := range logs {
		text := d.log.String()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				f.t.Errorf("%s's log holds a secret (App Certificate or broker password)", d.name)
			}
		}
		if strings.Contains(text, "007eJ") {
			f.t.Errorf("%s's log holds a token", d.name)
		}
	}
}
