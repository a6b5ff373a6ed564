package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"agoratokens/agent"
	"agoratokens/agent/client"
	"agoratokens/agent/socket"
	"agoratokens/internal/testbroker"
	"agoratokens/internal/testlog"
	"agoratokens/issuer"
	"agoratokens/issuer/natsauth"
	"agoratokens/wire"
)

// natsEnv is a fleet on a NATS cluster: nats-server nodes whose users
// come from the nats-auth.conf natsauth writes, issuer replicas on the
// NATS transport, and agents on the nodes' MQTT listeners.
type natsEnv struct {
	t        testing.TB
	dir      string
	cluster  *testbroker.NATSCluster
	cfgPath  string
	issuerPW string
	devices  map[string]string // device → secret
	logs     *testlog.Buffer   // everything, checked for secrets
	quiet    bool              // replicas log warnings only (benchmarks)
}

const probeDevice = "probe-0"

// newNATSEnv writes the issuer's files and nats-auth.conf for devices
// (random secrets) and starts a cluster of nodes including it.
func newNATSEnv(t *testing.T, nodes int, ttl time.Duration, devices ...string) *natsEnv {
	t.Helper()
	secrets := map[string]string{}
	for _, d := range devices {
		secrets[d] = randomHex(t)
	}
	return newNATSEnvSecrets(t, testbroker.NATSOptions{Nodes: nodes}, ttl, secrets)
}

// newNATSEnvSecrets is newNATSEnv with the devices' secrets and the
// cluster's options given; opts.Quiet also makes the replicas log
// warnings only (benchmarks).
func newNATSEnvSecrets(t testing.TB, opts testbroker.NATSOptions, ttl time.Duration, secrets map[string]string) *natsEnv {
	quiet := opts.Quiet
	t.Helper()
	e := &natsEnv{t: t, dir: t.TempDir(), issuerPW: hexTB(t), devices: map[string]string{}, logs: &testlog.Buffer{}, quiet: quiet}
	e.devices[probeDevice] = hexTB(t)
	for d, s := range secrets {
		e.devices[d] = s
	}
	names := make([]string, 0, len(e.devices))
	for d := range e.devices {
		names = append(names, d)
	}
	h, err := hashAll(e.devices)
	if err != nil {
		t.Fatal(err)
	}
	ih, err := natsauth.Hash(e.issuerPW)
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(e.dir, "nats-auth.conf")
	if _, err := natsauth.Write(auth, wire.NewTopics(""), &natsauth.User{Name: "agora-issuer", Hash: ih}, names, h); err != nil {
		t.Fatal(err)
	}
	opts.AuthFile = auth
	e.cluster = testbroker.StartNATS(t, opts)
	e.cluster.WaitMQTT(testbroker.ClientOptions{ClientID: probeDevice, Username: probeDevice, Password: e.devices[probeDevice]})

	cert := hexTB(t)
	writeFileTB(t, filepath.Join(e.dir, "primary.cert"), cert+"\n")
	writeFileTB(t, filepath.Join(e.dir, "issuer.pw"), e.issuerPW+"\n")
	writeFileTB(t, filepath.Join(e.dir, "policy.yaml"), fmt.Sprintf(`rules:
  - match: "dev-*"
    tokens:
      video:  {service: rtc, channel: "cam-{device}", uid: "{uid}", role: publisher, ttl: %s}
`, ttl))
	var servers, mqttURLs []string
	for _, u := range e.cluster.ClientURLs() {
		servers = append(servers, fmt.Sprintf("%q", u))
	}
	for _, u := range e.cluster.MQTTURLs() {
		mqttURLs = append(mqttURLs, fmt.Sprintf("%q", u))
	}
	e.cfgPath = filepath.Join(e.dir, "issuer.yaml")
	writeFileTB(t, e.cfgPath, fmt.Sprintf(`app_id: %s
certificates: [{id: primary, file: primary.cert}]
broker:
  nats:
    servers: [%s]
    user: agora-issuer
    password_file: issuer.pw
    mqtt_urls: [%s]
topic_root: agora/v1
policy_file: policy.yaml
limits:
  rate: {per_minute: 600, burst: 100}
log_level: debug
`, hexTB(t), strings.Join(servers, ", "), strings.Join(mqttURLs, ", ")))
	t.Cleanup(func() {
		for _, s := range append([]string{cert, e.issuerPW}, values(e.devices)...) {
			if strings.Contains(e.logs.String(), s) {
				t.Error("a log line contains a secret")
			}
		}
	})
	return e
}

// hashAll bcrypt-hashes the secrets on every core.
func hashAll(secrets map[string]string) (natsauth.Hashes, error) {
	type item struct{ name, secret string }
	in := make(chan item)
	var mu sync.Mutex
	h := natsauth.Hashes{}
	var first error
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range in {
				hash, err := natsauth.Hash(it.secret)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				h[it.name] = hash
				mu.Unlock()
			}
		}()
	}
	for n, s := range secrets {
		in <- item{n, s}
	}
	close(in)
	wg.Wait()
	return h, first
}

func hexTB(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFileTB(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// replica is one issuer process on NATS.
type natsReplica struct {
	name string
	svc  *issuer.Service
	log  *testlog.Buffer
	stop context.CancelFunc
	done chan error
}

func (e *natsEnv) startReplica(name string) *natsReplica {
	e.t.Helper()
	r := &natsReplica{name: name, log: &testlog.Buffer{}, done: make(chan error, 1)}
	log := slog.New(teeHandler{slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}),
		e.logs.Logger().Handler()}).With("side", "issuer", "replica", name)
	if e.quiet {
		log = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelWarn})).With("replica", name)
	}
	svc, err := issuer.New(issuer.Options{ConfigFile: e.cfgPath, Logger: log})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.svc, r.stop = svc, cancel
	go func() { r.done <- svc.Run(ctx) }()
	select {
	case <-svc.Started():
	case err := <-r.done:
		e.t.Fatalf("issuer %s stopped: %v\n%s", name, err, r.log.String())
	case <-time.After(30 * time.Second):
		e.t.Fatalf("issuer %s did not start\n%s", name, r.log.String())
	}
	e.t.Cleanup(func() { r.shutdown(e.t) })
	return r
}

// shutdown stops the replica as SIGTERM would and waits for Run.
func (r *natsReplica) shutdown(t testing.TB) {
	if r.stop == nil {
		return
	}
	r.stop()
	r.stop = nil
	if err := <-r.done; err != nil {
		t.Errorf("issuer %s stopped with %v", r.name, err)
	}
}

var grantedRE = regexp.MustCompile(`msg=granted .*device=(\S+) id=(\S+)`)

// grants counts the replica's grants per device and request id.
func (r *natsReplica) grants(into map[string]int) {
	for _, m := range grantedRE.FindAllStringSubmatch(r.log.String(), -1) {
		into[m[1]+"/"+m[2]]++
	}
}

// teeHandler writes each record to two handlers.
type teeHandler struct{ a, b slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || h.b.Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	_ = h.a.Handle(ctx, r.Clone())
	return h.b.Handle(ctx, r)
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(as), h.b.WithAttrs(as)}
}

func (h teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{h.a.WithGroup(g), h.b.WithGroup(g)}
}

// watched is an agent with its socket and a watch client on it, which
// records every violation of "the client always holds a valid token".
type natsWatched struct {
	id  string
	log *testlog.Buffer

	mu         sync.Mutex
	cur        client.Token
	tokens     int
	violations []string
	update     chan struct{} // signalled at each token
	renewals   atomic.Int64
	// stop ends the agent as SIGTERM would (its status says offline),
	// and its watch client; also at the test's end.
	stop func()
}

// startWatchedAgent runs device id's agent with brokers (its broker.url
// list), its socket, and a watch client on it.
func (e *natsEnv) startWatchedAgent(id string, brokers []string) *natsWatched {
	e.t.Helper()
	w := &natsWatched{id: id, log: &testlog.Buffer{}, update: make(chan struct{}, 1)}
	dir := filepath.Join(e.dir, id)
	pw := filepath.Join(e.dir, id+".pw")
	writeFileTB(e.t, pw, e.devices[id]+"\n")
	cfg, err := agent.ParseConfig(strings.NewReader(fmt.Sprintf(`device_id: %s
broker:
  url: [%s]
  password_file: %s
  keepalive: 5s
topic_root: agora/v1
tokens: [video]
renew_window: [0.3, 0.35]
renew_before: 30s
renew_min_interval: 1s
backoff: {initial: 200ms, max: 1s, multiplier: 2, jitter: 0.1}
request_timeout: 2s
state_dir: %s
`, id, strings.Join(brokers, ", "), pw, filepath.Join(dir, "state"))), dir)
	if err != nil {
		e.t.Fatal(err)
	}
	log := slog.New(teeHandler{slog.NewTextHandler(w.log, &slog.HandlerOptions{Level: slog.LevelInfo}),
		e.logs.Logger().Handler()}).With("side", "agent", "device", id)
	eng, err := agent.New(*cfg, agent.Deps{Logger: log})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- eng.Run(ctx) }()
	sock := filepath.Join(e.dir, id+".sock")
	srv, err := socket.New(socket.Config{Path: sock, Device: id, Logger: log.With("side", "socket")}, eng)
	if err != nil {
		e.t.Fatal(err)
	}
	go func() { done <- srv.Run(ctx) }()
	<-srv.Ready()
	c, err := client.Dial(sock)
	if err != nil {
		e.t.Fatal(err)
	}
	events, err := c.Watch(ctx, "video")
	if err != nil {
		e.t.Fatal(err)
	}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for ev := range events {
			w.see(ev)
		}
	}()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			for range 2 {
				if err := <-done; err != nil && err != context.Canceled {
					e.t.Errorf("agent %s: %v", id, err)
				}
			}
			<-watchDone
			c.Close()
		})
	}
	e.t.Cleanup(w.stop)
	return w
}

// see checks one watch event: a new token must come while the one held
// is still valid, and no token may expire.
func (w *natsWatched) see(ev client.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	switch ev.Kind {
	case client.EventExpired:
		w.violations = append(w.violations, fmt.Sprintf("%s: the agent says the token expired", now.Format(time.StampMilli)))
	case client.EventToken:
		if w.tokens > 0 && ev.Token.Token != w.cur.Token {
			if !now.Before(w.cur.Deadline) {
				w.violations = append(w.violations, fmt.Sprintf("%s: a new token came %v after the one held expired",
					now.Format(time.StampMilli), now.Sub(w.cur.Deadline)))
			}
			w.renewals.Add(1)
		}
		if w.tokens == 0 || ev.Token.Token != w.cur.Token {
			w.tokens++
			w.cur = ev.Token
		}
		select {
		case w.update <- struct{}{}:
		default:
		}
	}
}

// waitRenewals waits until the watch has seen n renewals.
func (w *natsWatched) waitRenewals(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for w.renewals.Load() < n {
		select {
		case <-w.update:
		case <-deadline:
			t.Fatalf("%s: %d renewals after %v, want %d\nagent log:\n%s", w.id, w.renewals.Load(), timeout, n, w.log.String())
		}
	}
}

// check reports the violations seen and that the token held is valid now.
func (w *natsWatched) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		t.Errorf("%s: %s", w.id, v)
	}
	if w.tokens == 0 || !time.Now().Before(w.cur.Deadline) {
		t.Errorf("%s: holds no valid token at the end", w.id)
	}
}

// connections counts the agent's connections to broker url so far.
func (w *natsWatched) connections(url string) int {
	n := 0
	for _, l := range strings.Split(w.log.String(), "\n") {
		if strings.Contains(l, `msg="connected to the broker"`) && strings.HasSuffix(l, " broker="+url) {
			n++
		}
	}
	return n
}

// observer is a NATS client that sees every request published (a plain
// subscription beside the replicas' queue group).
type observer struct {
	mu   sync.Mutex
	reqs map[string]int // device/id → publishes seen
	nc   *nats.Conn
}

func (e *natsEnv) observe(node int) *observer {
	e.t.Helper()
	o := &observer{reqs: map[string]int{}}
	nc, err := nats.Connect(e.cluster.Nodes[node].ClientURL, nats.UserInfo("agora-issuer", e.issuerPW))
	if err != nil {
		e.t.Fatal(err)
	}
	o.nc = nc
	_, err = nc.Subscribe(natsauth.Subject(wire.NewTopics("").AllReqs()), func(m *nats.Msg) {
		req, err := wire.DecodeRequest(m.Data)
		if err != nil {
			return
		}
		dev, _ := wire.NewTopics("").DeviceFromReq(natsauth.Topic(m.Subject))
		o.mu.Lock()
		o.reqs[dev+"/"+req.ID]++
		o.mu.Unlock()
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return o
}
