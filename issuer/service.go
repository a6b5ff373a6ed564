package issuer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"agoratokens/clock"
	"agoratokens/internal/logthrottle"
	"agoratokens/issuer/broker"
	"agoratokens/wire"
)

// Timeouts of the service's MQTT operations.
const (
	opTimeout      = 10 * time.Second
	drainTimeout   = 20 * time.Second
	replayWindow   = 2 * time.Minute
	replayMaxItems = 200_000
)

// The broker connection's retries back off from connectInitial to
// connectMax; the failures are logged at most a few times a minute.
const (
	connectInitial = 500 * time.Millisecond
	connectMax     = 5 * time.Second
	connectLogTime = time.Minute
)

// Options configure a Service. Only ConfigFile is required.
type Options struct {
	// ConfigFile is the issuer's config; Reload reads it again.
	ConfigFile string
	// Logger receives the service's logs (default slog.Default()).
	Logger *slog.Logger
	// LogLevel, when set, follows the config's log_level across reloads.
	LogLevel *slog.LevelVar
	// Clock is the issuer's time: token issue times (its wall clock),
	// rate limits, replay windows, reply and drain deadlines, connection
	// backoff and log throttling (default the real clock).
	Clock clock.Clock
	// Salt picks token salts (default crypto/rand).
	Salt func() (uint32, error)
	// Workers bounds the requests handled at once (default 16 per CPU).
	Workers int
	// QueueSize bounds the requests taken and not yet answered, over
	// all devices (default 65536), and QueueBytes their payloads
	// (default 64 MiB); beyond either, requests are shed.
	QueueSize  int
	QueueBytes int
	// DeviceQueue bounds them per device (default 8).
	DeviceQueue int
	// WorkerHook, when set, is called by a worker before each job it
	// takes (a request or a liveness probe). Tests wedge the workers
	// with it; production leaves it nil.
	WorkerHook func()
	// MaxDevices bounds the fleet registry (default DefaultMaxDevices).
	MaxDevices int
}

// state is everything a reload replaces at once.
type state struct {
	cfg    *Config
	policy *Policy
	signer *Signer
	keys   *apiKeys // nil: HTTP token API off
	http   *httpState
}

// Service is the issuer: it answers token requests arriving over MQTT
// (and HTTP) according to the policy. Build it with New and run it with
// Run.
type Service struct {
	opts    Options
	log     *slog.Logger
	dlog    *logthrottle.Logger // lines a device can trigger
	connLog *logthrottle.Logger // broker connection failures
	clk     clock.Clock
	state   atomic.Pointer[state]
	topics  wire.Topics // fixed at New: changing it needs a restart
	name    string      // client id, also the "issuer" of the status
	metrics *metrics
	limiter *limiter
	keyRate *keyLimiter // the HTTP API's per-key limits
	replay  *replayCache

	adm        *admission
	work       chan job // a place per request admitted, and one for a probe
	replies    chan pendingReply
	refusals   chan refusal
	statusKick chan struct{} // asks the status loop to say online again
	pushKick   chan struct{} // asks the push loop to push fresh tokens
	probeMu    sync.Mutex
	probing    chan struct{} // the probe queued and not yet taken
	connected  atomic.Bool   // connected once: later failures are reconnects
	reload     sync.Mutex    // serializes Reload
	clientV    atomic.Value  // mqtt.Client, set by Run before connecting
	outlet     outletBox     // the transport's publisher, set by Run
	embedded   atomic.Pointer[broker.Broker]
	httpAddr   atomic.Value  // string
	ready      atomic.Bool   // connected and subscribed
	started    chan struct{} // closed when first ready
	startOnce  sync.Once
	stopped    atomic.Bool // Run is shutting down
	fleet      fleetState  // registry, ledger and campaign (fleet.go)
}

// New loads the config, policy and certificates and returns a service
// ready to Run.
func New(opts Options) (*Service, error) {
	if opts.ConfigFile == "" {
		return nil, errors.New("issuer: no config file")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real()
	}
	if opts.Workers <= 0 {
		opts.Workers = 16 * runtime.GOMAXPROCS(0)
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = defaultQueueSize
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = defaultQueueBytes
	}
	if opts.DeviceQueue <= 0 {
		opts.DeviceQueue = defaultDeviceQueue
	}
	st, err := loadState(opts.ConfigFile, opts.Salt)
	if err != nil {
		return nil, err
	}
	s := &Service{
		opts:       opts,
		log:        opts.Logger,
		dlog:       logthrottle.New(opts.Logger, opts.Clock, 0, 0),
		connLog:    logthrottle.New(opts.Logger, opts.Clock, connectLogTime, 3),
		clk:        opts.Clock,
		topics:     st.cfg.Topics(),
		metrics:    newMetrics(),
		limiter:    newLimiter(st.cfg.Limits.Rate.PerMinute, st.cfg.Limits.Rate.Burst),
		replay:     newReplayCache(replayWindow, replayMaxItems),
		keyRate:    newKeyLimiter(),
		adm:        newAdmission(opts.QueueSize, opts.QueueBytes, opts.DeviceQueue),
		work:       make(chan job, opts.QueueSize+1),
		replies:    make(chan pendingReply, opts.QueueSize),
		refusals:   make(chan refusal, refusalQueue),
		statusKick: make(chan struct{}, 1),
		pushKick:   make(chan struct{}, 1),
		started:    make(chan struct{}),
	}
	s.metrics.watchQueue(s.adm.inFlight)
	s.name = st.cfg.Broker.ClientID
	if s.name == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		s.name = "agora-token-issuer-" + hex.EncodeToString(b[:])
	}
	s.setState(st)
	s.initFleet(st.cfg)
	return s, nil
}

// loadState reads the config file and everything it names.
func loadState(file string, salt func() (uint32, error)) (*state, error) {
	l, err := load(file, salt)
	if err != nil {
		return nil, err
	}
	return l.state(), nil
}

func (s *Service) setState(st *state) {
	s.state.Store(st)
	s.limiter.setRate(st.cfg.Limits.Rate.PerMinute, st.cfg.Limits.Rate.Burst)
	if s.opts.LogLevel != nil {
		if l, err := ParseLogLevel(st.cfg.LogLevel); err == nil {
			s.opts.LogLevel.Set(l)
		}
	}
}

// Name is the service's MQTT client id, also named in its status.
func (s *Service) Name() string { return s.name }

// Config returns the config in force.
func (s *Service) Config() *Config { return s.state.Load().cfg }

// Ready reports whether the service is connected to its broker, has
// subscribed to the requests and holds a policy.
func (s *Service) Ready() bool { return s.ready.Load() && s.state.Load() != nil }

// Started is closed once the service first became ready (for systemd's
// READY=1 and for tests).
func (s *Service) Started() <-chan struct{} { return s.started }

// BrokerAddr is the embedded broker's address once it listens ("" with
// an external broker).
func (s *Service) BrokerAddr() string {
	if br := s.embedded.Load(); br != nil {
		return br.Addr()
	}
	return ""
}

// Reload reads the config, policy and certificates again (what SIGHUP
// does). If anything is invalid, the old ones stay in force and the error
// says why. Broker, topic root, share group and listen address changes
// need a restart; they are logged and otherwise ignored. When the active
// certificate changes, every device seen since start gets fresh tokens
// pushed, by Run (so the push ends with Run, not with the caller's
// context, which Reload does not use beyond its own return).
func (s *Service) Reload(_ context.Context) error {
	s.reload.Lock()
	defer s.reload.Unlock()
	old := s.state.Load()
	if err := s.reloadBroker(); err != nil {
		s.log.Error("reload: keeping the previous device credentials", "err", err)
	}
	st, err := loadState(s.opts.ConfigFile, s.opts.Salt)
	if err == nil {
		err = s.followCampaign(st)
	}
	if err != nil {
		s.metrics.reloads.WithLabelValues("error").Inc()
		s.log.Error("reload failed; keeping the previous config", "err", err)
		return err
	}
	if changed := restartKeys(old.cfg, st.cfg); len(changed) > 0 {
		s.log.Warn("reload: these keys changed but take effect only after a restart", "keys", changed)
	}
	s.setState(st)
	s.metrics.reloads.WithLabelValues("ok").Inc()
	s.log.Info("reloaded", "active_certificate", st.cfg.ActiveCertificate,
		"certificates", len(st.cfg.Certificates), "rules", len(st.policy.Rules))
	if st.signer.Active() != old.signer.Active() {
		// The push loop of Run does it (a second rotation before it is
		// done pushes once more, with the newest certificate).
		select {
		case s.pushKick <- struct{}{}:
		default:
		}
	}
	return nil
}

// pushLoop pushes fresh tokens to every device seen each time Reload
// activates another certificate, until ctx ends.
func (s *Service) pushLoop(ctx context.Context) {
	for {
		select {
		case <-s.pushKick:
		case <-ctx.Done():
			return
		}
		kid := s.state.Load().signer.Active()
		n, err := s.PushAll(ctx)
		if err != nil {
			s.log.Warn("pushing tokens signed with the new certificate failed; devices get them at their next renewal",
				"devices", n, "kid", kid, "err", err)
			continue
		}
		s.log.Info("pushed tokens signed with the new certificate", "devices", n, "kid", kid)
	}
}

// restartKeys lists the keys whose change a reload cannot apply.
func restartKeys(a, b *Config) []string {
	var out []string
	if a.Broker.URL != b.Broker.URL || a.Broker.ClientID != b.Broker.ClientID ||
		a.Broker.Username != b.Broker.Username || a.Broker.PasswordFile != b.Broker.PasswordFile ||
		(a.Broker.Embedded == nil) != (b.Broker.Embedded == nil) ||
		a.Broker.Embedded != nil && *a.Broker.Embedded != *b.Broker.Embedded ||
		!a.Broker.NATS.same(b.Broker.NATS) {
		out = append(out, "broker")
	}
	if a.TopicRoot != b.TopicRoot {
		out = append(out, "topic_root")
	}
	if a.ShareGroup != b.ShareGroup {
		out = append(out, "share_group")
	}
	if a.Listen != b.Listen {
		out = append(out, "listen")
	}
	if a.StateDir != b.StateDir {
		out = append(out, "state_dir")
	}
	return out
}

// Run connects to the broker (starting the embedded one first when
// configured), serves requests and the HTTP endpoints until ctx ends,
// then shuts down cleanly: it stops taking requests, finishes those in
// flight, publishes its offline status and disconnects. It returns nil
// after a clean shutdown.
func (s *Service) Run(ctx context.Context) error {
	cfg := s.state.Load().cfg
	g, gctx := errgroup.WithContext(ctx)
	conn, stopBroker, err := s.brokerConn(gctx, g, cfg)
	if err != nil {
		return err
	}
	if cfg.Listen != "" {
		if err := s.serveHTTP(gctx, g, cfg.Listen); err != nil {
			stopBroker()
			return err
		}
	}
	g.Go(func() error {
		defer stopBroker()
		if n := cfg.Broker.NATS; n != nil {
			return s.runNATS(gctx, n)
		}
		return s.runMQTT(gctx, conn)
	})
	return g.Wait()
}

// runMQTT connects and serves until ctx ends, then drains. Every
// goroutine it starts has returned when it returns.
func (s *Service) runMQTT(ctx context.Context, conn brokerConn) error {
	opts, err := s.clientOptions(conn)
	if err != nil {
		return err
	}
	client := mqtt.NewClient(opts)
	s.clientV.Store(client)
	s.setOut(mqttOutlet{client})
	return s.serveRequests(ctx, func() bool {
		if !s.connect(ctx, client, conn.url) {
			client.Disconnect(0)
			return false
		}
		return true
	}, s.shutdown)
}

// serveRequests runs the request path shared by the transports (the
// workers, the reply tracker, the refuser, the status and push loops),
// connects, serves until ctx ends, then calls shutdown. Every goroutine
// it starts has returned when it returns.
func (s *Service) serveRequests(ctx context.Context, connect func() bool, shutdown func()) error {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	spawn := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	defer wg.Wait()
	defer close(stop)
	spawn(func() { s.ackReplies(stop) })
	spawn(func() { s.refuser(stop) })
	spawn(func() { s.statusLoop(stop) })
	spawn(func() { s.pushLoop(ctx) })
	for range s.opts.Workers {
		spawn(func() { s.worker(stop) })
	}
	if !connect() {
		return nil
	}
	<-ctx.Done()
	shutdown()
	return nil
}

// connect connects the client, retrying with exponential backoff until
// it succeeds (true) or ctx ends (false). paho reconnects by itself after
// a connection is lost. Each failure's cause is logged, throttled: a
// wrong password or a broker down is visible in the log at once.
func (s *Service) connect(ctx context.Context, c mqtt.Client, brokerURL string) bool {
	bo := &backoff.ExponentialBackOff{
		InitialInterval: connectInitial, RandomizationFactor: 0.2, Multiplier: 2,
		MaxInterval: connectMax, Stop: backoff.Stop, Clock: s.clk,
	}
	bo.Reset()
	for failures := 1; ; failures++ {
		tok := c.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return false
		}
		err := tok.Error()
		if err == nil {
			return true
		}
		wait := bo.NextBackOff()
		s.connLog.Warn("cannot connect to the broker; retrying", "broker", redactURL(brokerURL),
			"failures", failures, "retry_in", wait.Round(time.Millisecond), "err", err)
		t := s.clk.NewTimer(wait)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
}

// redactURL drops a password from a broker URL for the log.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

// shutdown stops taking requests, lets the ones in flight finish,
// publishes offline and disconnects.
func (s *Service) shutdown() {
	s.stopped.Store(true)
	s.ready.Store(false)
	s.stopFleet()
	c := s.client()
	if c.IsConnectionOpen() {
		// With a shared subscription, new requests now go to the other
		// replicas.
		if t := c.Unsubscribe(s.reqFilter()); !t.WaitTimeout(opTimeout) || t.Error() != nil {
			s.log.Warn("unsubscribe on shutdown failed", "err", t.Error())
		}
	}
	if c.IsConnectionOpen() {
		s.drain(drainTimeout)
	} else {
		// Replies cannot go out without a connection: no point waiting.
		s.drain(time.Second)
	}
	if c.IsConnectionOpen() {
		s.publishStatus(wire.StateOffline)
	}
	c.Disconnect(1000)
	s.log.Info("stopped")
}

// drain admits no more requests and waits until every request taken is
// answered and its reply acknowledged, or timeout passes.
func (s *Service) drain(timeout time.Duration) {
	idle := s.adm.close()
	timer := s.clk.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-idle:
	case <-timer.C():
		s.log.Warn("shutdown: requests still in flight after the drain timeout",
			"timeout", timeout, "requests", s.adm.inFlight())
	}
}

// client is the MQTT client, nil before Run.
func (s *Service) client() mqtt.Client {
	c, _ := s.clientV.Load().(mqtt.Client)
	return c
}

func (s *Service) reqFilter() string { return s.topics.SharedReqs(s.state.Load().cfg.ShareGroup) }

func (s *Service) clientOptions(conn brokerConn) (*mqtt.ClientOptions, error) {
	return s.mqttOptions([]string{conn.url}, conn, s.onConnect)
}

// mqttOptions are the options of the issuer's MQTT connection to the
// brokers at urls (paho fails over between them), which calls
// onConnect after every connect.
func (s *Service) mqttOptions(urls []string, conn brokerConn, onConnect mqtt.OnConnectHandler) (*mqtt.ClientOptions, error) {
	will, err := wire.Encode(s.status(wire.StateOffline))
	if err != nil {
		return nil, err
	}
	redacted := make([]string, len(urls))
	for i, u := range urls {
		redacted[i] = redactURL(u)
	}
	brokers := strings.Join(redacted, ",")
	// Auto-ack is off: a request is acknowledged once its reply is (see
	// onRequest), and every handler acknowledges its messages itself.
	// Order matters: the handlers run on paho's router goroutine, one
	// message at a time, and never block (see mqttreq.go), so a flood
	// waits in the broker and the socket, not in goroutines of ours.
	// The first connection is retried by connect (with the cause in the
	// log); reconnection backs off to connectMax at most: the whole
	// fleet waits on the issuer, and a few issuers reconnecting often
	// load no broker.
	o := mqtt.NewClientOptions().SetClientID(s.name).
		SetCleanSession(true).SetOrderMatters(true).SetAutoAckDisabled(true).
		SetAutoReconnect(true).SetConnectRetry(false).SetMaxReconnectInterval(connectMax).
		SetConnectTimeout(opTimeout).SetKeepAlive(30*time.Second).
		SetBinaryWill(s.topics.IssuerStatus(), will, 1, true).
		SetOnConnectHandler(onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			if conn.fleetOnly {
				s.connLog.Warn("fleet state connection lost; reconnecting (requests are still served)", "broker", brokers, "err", err)
				return
			}
			s.ready.Store(false)
			s.connLog.Warn("broker connection lost; reconnecting", "broker", brokers, "err", err)
		}).
		SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
			if f, ok := n.(mqtt.ConnectionNotificationFailed); ok && s.connected.Load() && !s.stopped.Load() {
				s.connLog.Warn("cannot reconnect to the broker; retrying", "broker", brokers, "err", f.Reason)
			}
		})
	for _, u := range urls {
		o.AddBroker(u)
	}
	if conn.username != "" {
		o.SetUsername(conn.username)
	}
	if !conn.password.IsZero() {
		o.SetPassword(conn.password.Reveal())
	}
	if conn.tls != nil {
		o.SetTLSConfig(conn.tls)
	}
	return o, nil
}

// onConnect (re)subscribes after every connect: the session is clean.
func (s *Service) onConnect(c mqtt.Client) {
	if s.stopped.Load() {
		return
	}
	filter := s.reqFilter()
	t := c.Subscribe(filter, 1, s.onRequest)
	if !t.WaitTimeout(opTimeout) || t.Error() != nil {
		s.log.Error("subscribe to requests failed", "filter", filter, "err", t.Error())
		return
	}
	if code := t.(*mqtt.SubscribeToken).Result()[filter]; code >= 0x80 {
		s.log.Error("the broker refused the subscription to requests (check its ACL)", "filter", filter)
		return
	}
	s.publishStatus(wire.StateOnline)
	s.subscribeFleet(c, 1)
	// Watch the shared status: when a replica dies its last will says
	// offline for everyone; the replicas still up say online again.
	st := c.Subscribe(s.topics.IssuerStatus(), 1, s.onIssuerStatus)
	if !st.WaitTimeout(opTimeout) || st.Error() != nil {
		s.log.Warn("subscribe to the issuer status failed", "err", st.Error())
	}
	s.connected.Store(true)
	s.ready.Store(true)
	s.startOnce.Do(func() { close(s.started) })
	s.log.Info("connected and serving", "filter", filter, "issuer", s.name)
}

func (s *Service) status(state string) wire.IssuerStatus {
	return wire.IssuerStatus{V: wire.SchemaVersion, State: state, Issuer: s.name, Version: version()}
}

func (s *Service) publishStatus(state string) {
	b, err := wire.Encode(s.status(state))
	if err != nil {
		s.log.Error("encode status", "err", err)
		return
	}
	t := s.out().publish(s.topics.IssuerStatus(), 1, true, b)
	if !t.WaitTimeout(opTimeout) || t.Error() != nil {
		s.log.Warn("publish issuer status failed", "state", state, "err", t.Error())
	}
}

// onIssuerStatus restores "online" when another replica's last will (or
// its shutdown) marked the issuers offline while this one still serves.
// It runs on paho's router and must not block: the status loop
// publishes.
func (s *Service) onIssuerStatus(_ mqtt.Client, m mqtt.Message) {
	defer m.Ack()
	var st wire.IssuerStatus
	if err := wire.Decode(m.Payload(), &st); err != nil {
		s.dlog.Warn("ignoring a malformed issuer status", "err", err)
		return
	}
	if st.State == wire.StateOffline && st.Issuer != s.name && !s.stopped.Load() {
		s.replicaGone(st.Issuer)
		s.dlog.Info("another issuer went offline; marking the service online", "other", st.Issuer)
		select {
		case s.statusKick <- struct{}{}:
		default: // one is pending already
		}
	}
}

// statusLoop publishes "online" each time onIssuerStatus asks, until
// stop is closed.
func (s *Service) statusLoop(stop <-chan struct{}) {
	for {
		select {
		case <-s.statusKick:
			if !s.stopped.Load() {
				s.publishStatus(wire.StateOnline)
			}
		case <-stop:
			return
		}
	}
}

// decide applies the policy and signs: the core shared by MQTT and HTTP.
func (s *Service) decide(st *state, device, id string, names []string, now time.Time) (*wire.Reply, string) {
	grants, err := st.policy.Grants(device, names)
	if err != nil {
		var de *DecisionError
		if errors.As(err, &de) {
			s.dlog.Info("request refused", "device", device, "id", id, "code", de.Code, "reason", de.Message)
			res := resultForbidden
			if de.Code == wire.CodeInvalidRequest {
				res = resultInvalid
			}
			return errReply(id, de.Code, de.Message, 0), res
		}
		s.dlog.Error("policy", "device", device, "err", err)
		return errReply(id, wire.CodeUnavailable, "internal error", 5), resultUnavailable
	}
	start := time.Now()
	out := make([]wire.Grant, 0, len(grants))
	for _, g := range grants {
		wg, err := st.signer.Sign(g, now)
		if err != nil {
			s.dlog.Error("signing failed", "device", device, "token", g.Name, "err", err)
			return errReply(id, wire.CodeUnavailable, "signing failed", 5), resultUnavailable
		}
		out = append(out, wg)
		s.fleet.ledger.record(wg.KID, wg.ExpiresAt)
	}
	s.metrics.signing.Observe(time.Since(start).Seconds())
	s.log.Debug("granted", "device", device, "id", id, "tokens", len(out), "kid", st.signer.Active())
	return &wire.Reply{V: wire.SchemaVersion, ID: id, IssuedAt: now.Unix(), Tokens: out}, resultOK
}

func errReply(id, code, msg string, retryAfter int) *wire.Reply {
	return &wire.Reply{V: wire.SchemaVersion, ID: id,
		Error: &wire.ErrorBody{Code: code, Message: msg, RetryAfter: retryAfter}}
}

func (s *Service) errorReply(id, code, msg string, retryAfter int) []byte {
	b, err := wire.Encode(errReply(id, code, msg, retryAfter))
	if err != nil {
		// Only an absurd message could do this; say less.
		b, _ = wire.Encode(errReply(id, code, "invalid request", retryAfter))
	}
	return b
}

// PushAll signs fresh tokens for every device seen since start and
// publishes them unasked (reply id "push-<kid>-<unix time>"), so that a
// certificate rotation reaches the fleet without waiting for renewals.
// It paces the pushes at DefaultCampaignRate devices a second, as a
// rotation campaign does: a fleet's renewals are not all bunched at
// one moment, and the broker is not flooded. It returns how many
// devices got tokens.
func (s *Service) PushAll(ctx context.Context) (int, error) {
	c := s.out()
	if c == nil || !c.open() {
		return 0, errors.New("push: not connected")
	}
	st := s.state.Load()
	now := s.clk.Wall()
	id := fmt.Sprintf("%s%s-%d", wire.PushPrefix, st.signer.Active(), now.Unix())
	s.metrics.mu.Lock()
	devices := make([]string, 0, len(s.metrics.seen))
	for d := range s.metrics.seen {
		devices = append(devices, d)
	}
	s.metrics.mu.Unlock()
	slices.Sort(devices)
	n := 0
	for i, d := range devices {
		if i > 0 {
			pace := s.clk.NewTimer(time.Second / DefaultCampaignRate)
			select {
			case <-pace.C():
			case <-ctx.Done():
				pace.Stop()
				return n, ctx.Err()
			}
		}
		reply, result := s.decide(st, d, id, nil, s.clk.Wall())
		if result != resultOK {
			continue // no longer granted anything: nothing to push
		}
		b, err := wire.Encode(reply)
		if err != nil {
			continue
		}
		t := c.publish(s.topics.Token(d), 1, false, b)
		if t.WaitTimeout(opTimeout) && t.Error() == nil {
			n++
		}
	}
	return n, nil
}

// requestID digs the request id out of a payload that failed to decode,
// so that the error reply can name it; "unknown" when it cannot.
func requestID(payload []byte) string {
	var r struct {
		ID any `json:"id"`
	}
	if err := json.Unmarshal(payload, &r); err == nil {
		if id, ok := r.ID.(string); ok && wire.ValidateName("id", id) == nil {
			return id
		}
	}
	return "unknown"
}
