package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"agoratokens/brokertls"
	"agoratokens/buildinfo"
	"agoratokens/clock"
	"agoratokens/wire"
)

// errNotConnected fails a request when the connection dropped after the
// engine decided to send it (the engine sends only while connected); the
// engine retries it when the connection is back.
var errNotConnected = errors.New("not connected to the broker")

// mqttSource is the Transport over an MQTT broker: a persistent session
// (clean session off, client id = device id), a QoS 1 subscription to the
// device's token topic, and a retained status with an offline last will.
//
// It owns its reconnection: paho's own (AutoReconnect, ConnectRetry) is
// off, because paho never resets its backoff after a good connection and
// cannot hear that a token is about to expire. Run dials a fresh paho
// client for each connection, waits the agent's backoff between failed
// dials (reset once a connection has worked, capped by what the tokens
// waiting for a renewal can afford), dials at once when a renewal waits
// for the connection, and drops and redials a connection on which a
// request got no acknowledgement within request_timeout.
type mqttSource struct {
	cfg    *Config
	device string
	topics wire.Topics
	clk    clock.Clock
	log    *slog.Logger
	// opts holds one set of client options per broker in broker.url,
	// in order; Run dials them in turn, moving to the next after each
	// failed dial and each connection that ended (failover).
	opts []*mqtt.ClientOptions
	urls []string
	// next is the index in opts of the broker Run dials next.
	next int
	// newClient makes the client of one connection: mqtt.NewClient
	// (tests put a fake in its place).
	newClient func(*mqtt.ClientOptions) mqtt.Client
	hooks     TransportHooks
	// waited, when set, hears each wait Run chooses before dialing
	// again (tests check the backoff with it).
	waited func(time.Duration)

	connected atomic.Bool
	// lost carries the client whose connection paho reported lost.
	lost chan mqtt.Client
	// redial carries the client on which a request got no PUBACK in
	// time: Run drops that connection and dials again at once.
	redial chan mqtt.Client
	// wake cuts Run's wait short: a request waits for the connection.
	wake chan struct{}
	// statuses owns the goroutines that wait for a status publish's
	// PUBACK (at most request_timeout each); Run waits for them.
	statuses waiters

	mu     sync.Mutex
	client mqtt.Client // the current connection's; nil before the first dial
	// held: a request waits for the connection, to renew a token that
	// expires at heldBy (zero: no valid token is at stake).
	held    bool
	heldBy  time.Time
	pending map[string]chan *wire.Reply
	status  *wire.DeviceStatus
}

// keepAliveFor is the MQTT keepalive the agent uses: broker.keepalive,
// but at most a third of renew_before (and at least the 1 s MQTT can
// express). paho pings after a keepalive of silence and drops the
// connection when no answer came within the ping timeout (checking a
// quarter keepalive apart), so a link that died without a RST is
// noticed within about 2.5 keepalives: under renew_before, before the
// renewal that needs it.
func keepAliveFor(cfg *Config) time.Duration {
	k := cfg.Broker.KeepAlive
	if k <= 0 || k > cfg.RenewBefore/3 {
		k = cfg.RenewBefore / 3
	}
	return max(k.Truncate(time.Second), time.Second)
}

// pingTimeoutFor is how long paho waits for a PINGRESP: request_timeout,
// but no more than the keepalive.
func pingTimeoutFor(cfg *Config, keepAlive time.Duration) time.Duration {
	return min(cfg.RequestTimeout, keepAlive)
}

func newMQTT(cfg *Config, device string, clk clock.Clock, log *slog.Logger) (*mqttSource, error) {
	m := &mqttSource{cfg: cfg, device: device, topics: wire.NewTopics(cfg.TopicRoot), clk: clk,
		log: log, pending: map[string]chan *wire.Reply{}, newClient: mqtt.NewClient,
		lost: make(chan mqtt.Client, 4), redial: make(chan mqtt.Client, 4), wake: make(chan struct{}, 1)}
	b := cfg.Broker
	m.urls = b.URLs
	if len(m.urls) == 0 {
		m.urls = []string{b.URL}
	}
	will, err := wire.Encode(offlineStatus())
	if err != nil {
		return nil, err
	}
	for _, u := range m.urls {
		o, err := m.clientOptions(u, will)
		if err != nil {
			return nil, err
		}
		m.opts = append(m.opts, o)
	}
	return m, nil
}

// clientOptions are the options of a connection to the broker at url.
// Each broker gets its own (one server each): the failover between them
// is Run's, with its backoff, not paho's.
func (m *mqttSource) clientOptions(url string, will []byte) (*mqtt.ClientOptions, error) {
	cfg, device, b := m.cfg, m.device, m.cfg.Broker
	ka := keepAliveFor(cfg)
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(device).
		SetCleanSession(false).SetKeepAlive(ka).SetPingTimeout(pingTimeoutFor(cfg, ka)).
		SetAutoReconnect(false).SetConnectRetry(false).SetStore(noStore{}).
		SetConnectTimeout(cfg.RequestTimeout).SetWriteTimeout(cfg.RequestTimeout).
		SetOrderMatters(false).
		SetConnectionLostHandler(m.onLost).
		SetDefaultPublishHandler(m.onMessage)
	user := b.Username
	if user == "" {
		user = device
	}
	opts.SetUsername(user)
	if b.password != nil {
		opts.SetPassword(b.password.Reveal())
	}
	opts.SetBinaryWill(m.topics.Status(device), will, 1, true)
	if b.CAFile != "" || b.CertFile != "" || strings.HasPrefix(url, "ssl") {
		tc, err := brokertls.Client("broker.", brokertls.Files{CAFile: b.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile})
		if err != nil {
			return nil, err
		}
		opts.SetTLSConfig(tc)
	}
	return opts, nil
}

func offlineStatus() wire.DeviceStatus {
	return wire.DeviceStatus{V: wire.SchemaVersion, State: wire.StateOffline, Agent: buildinfo.Version}
}

// Run keeps a connection to the broker until ctx ends, then publishes the
// offline status and disconnects. Each loss or failed dial is followed by
// a wait (see nextWait) and a new dial, to the next broker of broker.url.
func (m *mqttSource) Run(ctx context.Context, h TransportHooks) error {
	m.hooks = h
	defer m.statuses.close()
	bo := &backoff.ExponentialBackOff{
		InitialInterval: m.cfg.Backoff.Initial, RandomizationFactor: m.cfg.Backoff.randomization(),
		Multiplier: m.cfg.Backoff.Multiplier, MaxInterval: m.cfg.Backoff.Max,
		Stop: backoff.Stop, Clock: m.clk,
	}
	bo.Reset()
	for failures := 0; ; {
		url := m.urls[m.next]
		c := m.newClient(m.opts[m.next])
		// Whatever becomes of this dial, the next one goes to the next
		// broker of the list: a broker that refused or died is not
		// dialed again before the others have had their turn.
		m.next = (m.next + 1) % len(m.opts)
		m.mu.Lock()
		m.client = c
		m.mu.Unlock()
		tok := c.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			// paho gives up by itself within the connect timeout; wait
			// for it so that no dial outlives Run.
			tok.Wait()
			c.Disconnect(0)
			return nil
		}
		var wait time.Duration
		if err := tok.Error(); err != nil {
			failures++
			wait = m.nextWait(bo)
			if failures&(failures-1) == 0 {
				m.log.Warn("cannot connect to the broker; retrying", "broker", redactURL(url),
					"failures", failures, "retry_in", wait.Round(time.Millisecond), "err", err)
			}
		} else {
			failures = 0
			redial := m.serve(ctx, c, url, bo)
			if ctx.Err() != nil {
				m.shutdown(c)
				return nil
			}
			if !redial {
				wait = m.nextWait(bo)
			}
		}
		if !m.pause(ctx, wait) {
			return nil
		}
	}
}

// serve runs one connection: it subscribes (retrying a refusal with
// backoff), then waits until the connection is lost, must be redialed,
// or ctx ends. It resets the backoff once the subscription is granted,
// and reports whether Run should dial again at once: when a connection
// that worked stopped acknowledging requests.
func (m *mqttSource) serve(ctx context.Context, c mqtt.Client, url string, bo *backoff.ExponentialBackOff) (redial bool) {
	retry := m.clk.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	attempt := func() bool {
		switch m.subscribe(c, url) {
		case subscribed:
			// A connection that worked: the next loss starts the
			// backoff over, however many dials this one took.
			bo.Reset()
		case subscribeRefused:
			retry.Reset(bo.NextBackOff())
		case subscribeUnanswered:
			return false
		}
		return true
	}
	// A subscription the broker does not answer: dropped, and dialed
	// again after the backoff (not at once: this connection never
	// worked, and the next may fare no better).
	if !attempt() {
		m.drop(c, "the broker did not answer the subscription within request_timeout")
		return false
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case lc := <-m.lost:
			if lc == c {
				return false
			}
		case rc := <-m.redial:
			if rc == c {
				m.drop(c, "a request got no acknowledgement from the broker within request_timeout")
				return true
			}
		case <-retry.C():
			if !c.IsConnectionOpen() {
				continue // its loss is on its way
			}
			if !attempt() {
				m.drop(c, "the broker did not answer the subscription within request_timeout")
				return false
			}
		}
	}
}

// nextWait is the wait before the next dial: the backoff's next delay,
// but while a renewal waits for the connection no more than a quarter of
// the time its token has left (and no less than backoff.initial), so
// that a broker back in time leaves three quarters of the rest for the
// connection and the request. Once the token has expired the backoff
// alone rules again: a fleet whose tokens ran out during a long outage
// must not dial a broker that is down every backoff.initial.
func (m *mqttSource) nextWait(bo *backoff.ExponentialBackOff) time.Duration {
	w := bo.NextBackOff()
	m.mu.Lock()
	held, by := m.held, m.heldBy
	m.mu.Unlock()
	if left := by.Sub(m.clk.Now()); held && left > 0 {
		w = min(w, max(m.cfg.Backoff.Initial, left/4))
	}
	return w
}

// pause waits d before the next dial, less if a request comes to wait
// for the connection; false when ctx ended.
func (m *mqttSource) pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		if m.waited != nil {
			m.waited(d)
		}
		return ctx.Err() == nil
	}
	t := m.clk.NewTimer(d)
	defer t.Stop()
	if m.waited != nil {
		m.waited(d) // the timer is armed: a test may move the clock
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
	case <-m.wake:
		m.log.Debug("a request waits for the broker; dialing now")
	}
	return true
}

// RequestHeld is told by the engine that requests wait for the
// connection, to renew a token that expires at by (zero: none valid).
// News (the first held request, or an earlier deadline than the one
// known) makes Run dial at once; every wait then stays within what the
// earliest token affords. The engine repeats itself at each step, so
// anything else is no news.
func (m *mqttSource) RequestHeld(by time.Time) {
	if m.connected.Load() {
		return // a step that ran before the engine heard of the connection
	}
	m.mu.Lock()
	known := m.heldBy.After(m.clk.Now()) // a deadline still ahead
	news := !m.held || !by.IsZero() && (!known || by.Before(m.heldBy))
	if news {
		m.held, m.heldBy = true, by
	}
	m.mu.Unlock()
	if news {
		m.poke()
	}
}

func (m *mqttSource) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// down marks c's connection down, once, and tells the engine.
func (m *mqttSource) down(c mqtt.Client) {
	m.mu.Lock()
	current := m.client == c
	m.mu.Unlock()
	if current && m.connected.CompareAndSwap(true, false) && m.hooks.Disconnected != nil {
		m.hooks.Disconnected()
	}
}

// drop ends a connection that stopped answering (a dead link: no RST,
// no keepalive failure yet) so that Run can dial a new one.
func (m *mqttSource) drop(c mqtt.Client, why string) {
	m.log.Warn("dropping the broker connection; redialing", "why", why)
	m.down(c)
	// The old connection may not even take a DISCONNECT packet; its
	// socket is closed without waiting.
	c.Disconnect(0)
}

func (m *mqttSource) shutdown(c mqtt.Client) {
	if c.IsConnectionOpen() {
		if p, err := wire.Encode(offlineStatus()); err == nil {
			tok := c.Publish(m.topics.Status(m.device), 1, true, p)
			if !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
				m.log.Warn("could not publish the offline status", "err", tok.Error())
			}
		}
	}
	m.connected.Store(false)
	c.Disconnect(250)
	m.log.Info("disconnected from the broker")
}

// Outcomes of a subscription attempt.
const (
	subscribed = iota
	subscribeRefused
	subscribeUnanswered
)

// subscribe subscribes to the device's token topic and, once the broker
// granted it, reports the connection up. A refused subscription (a
// broker whose ACL does not match) is logged and retried by serve with
// backoff on the same connection; one the broker does not answer at all
// is taken for a dead link, and the connection is redialed.
func (m *mqttSource) subscribe(c mqtt.Client, url string) int {
	topic := m.topics.Token(m.device)
	tok := c.Subscribe(topic, 1, m.onMessage)
	if !tok.WaitTimeout(m.cfg.RequestTimeout) {
		m.log.Error("cannot subscribe to the token topic", "topic", topic, "err", "no answer from the broker")
		return subscribeUnanswered
	}
	err := tok.Error()
	if err == nil {
		if st, ok := tok.(*mqtt.SubscribeToken); ok {
			for _, q := range st.Result() {
				if q == 0x80 {
					err = errors.New("the broker refused it (check its ACL)")
				}
			}
		}
	}
	if err != nil {
		m.log.Error("cannot subscribe to the token topic; retrying", "topic", topic, "err", err)
		return subscribeRefused
	}
	m.mu.Lock()
	m.held = false
	st := m.status
	m.mu.Unlock()
	select {
	case <-m.wake: // a request that waited goes out now: no dial to hurry
	default:
	}
	m.connected.Store(true)
	m.log.Info("connected to the broker", "broker", redactURL(url))
	if st == nil {
		st = &wire.DeviceStatus{V: wire.SchemaVersion, State: wire.StateOnline, Agent: buildinfo.Version}
	}
	m.publishStatus(c, *st)
	if m.hooks.Connected != nil {
		m.hooks.Connected()
	}
	return subscribed
}

func (m *mqttSource) onLost(c mqtt.Client, err error) {
	m.mu.Lock()
	current := m.client == c
	m.mu.Unlock()
	if !current {
		return // a connection Run already dropped
	}
	m.log.Warn("lost the broker; reconnecting", "err", err)
	m.down(c)
	select {
	case m.lost <- c:
	default: // full of stale losses only: Run is past them
	}
}

func (m *mqttSource) onMessage(_ mqtt.Client, msg mqtt.Message) {
	if msg.Topic() != m.topics.Token(m.device) {
		m.log.Warn("message on an unexpected topic; dropped", "topic", msg.Topic())
		return
	}
	rep, err := wire.DecodeReply(msg.Payload())
	if err != nil {
		m.log.Warn("bad reply on the token topic; dropped", "err", err)
		return
	}
	m.mu.Lock()
	ch := m.pending[rep.ID]
	delete(m.pending, rep.ID)
	m.mu.Unlock()
	if ch != nil {
		ch <- rep // buffered, one reply per request
		return
	}
	if m.hooks.Unsolicited != nil {
		m.hooks.Unsolicited(rep)
	}
}

// live returns the client of the current connection, if it is up.
func (m *mqttSource) live() (mqtt.Client, bool) {
	m.mu.Lock()
	c := m.client
	m.mu.Unlock()
	return c, c != nil && m.connected.Load()
}

// Fetch publishes a request on the device's request topic and waits for
// the reply with the same id on its token topic. A request the broker
// did not acknowledge before ctx ended (the engine's request_timeout)
// means a dead connection: Run drops it and dials again. One that was
// acknowledged but not answered is the issuer's silence, and the
// connection stays.
func (m *mqttSource) Fetch(ctx context.Context, req wire.Request) (*wire.Reply, error) {
	c, ok := m.live()
	if !ok {
		m.poke()
		return nil, errNotConnected
	}
	p, err := wire.Encode(req)
	if err != nil {
		return nil, err
	}
	ch := make(chan *wire.Reply, 1)
	m.mu.Lock()
	m.pending[req.ID] = ch
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.pending, req.ID)
		m.mu.Unlock()
	}()
	pub := c.Publish(m.topics.Req(m.device), 1, false, p)
	select {
	case <-pub.Done():
		if err := pub.Error(); err != nil {
			return nil, fmt.Errorf("publish request: %w", err)
		}
	case rep := <-ch: // the reply overtook the PUBACK
		return rep, nil
	case <-ctx.Done():
		select {
		case m.redial <- c:
		default:
		}
		return nil, fmt.Errorf("publish request: no acknowledgement from the broker: %w", ctx.Err())
	}
	select {
	case rep := <-ch:
		return rep, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// State is "connected" or "disconnected".
func (m *mqttSource) State() string {
	if c, ok := m.live(); ok && c.IsConnectionOpen() {
		return "connected"
	}
	return "disconnected"
}

// Report keeps st as the device's retained status and publishes it now if
// connected (else on the next connection).
func (m *mqttSource) Report(st wire.DeviceStatus) {
	m.mu.Lock()
	m.status = &st
	m.mu.Unlock()
	if c, ok := m.live(); ok {
		m.publishStatus(c, st)
	}
}

// noStore is the paho store of each connection: it keeps nothing. Every
// dial is a new paho client, so a client never has a session of its own to
// resume; and paho's resume, which runs as the connection comes up, would
// set the DUP flag on a publish the agent makes on the new connection
// while paho's writer sends it (a data race in paho 1.5). The broker keeps
// the session (clean session off); a request lost with a connection is
// retried by the engine.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}

func (m *mqttSource) publishStatus(c mqtt.Client, st wire.DeviceStatus) {
	p, err := wire.Encode(st)
	if err != nil {
		m.log.Error("cannot encode status", "err", err)
		return
	}
	tok := c.Publish(m.topics.Status(m.device), 1, true, p)
	m.statuses.goWait(func() {
		if tok.WaitTimeout(m.cfg.RequestTimeout) && tok.Error() != nil {
			m.log.Warn("cannot publish status", "err", tok.Error())
		}
	})
}

// waiters runs goroutines that close can wait for. Report publishes from
// the engine's goroutine while Run may be returning, so starting one and
// waiting for them all are ordered by a lock (a bare WaitGroup's Add may
// not race its Wait). After close, goWait runs f on the caller: nothing
// is left behind Run.
type waiters struct {
	mu     sync.Mutex
	wg     sync.WaitGroup
	closed bool
}

func (w *waiters) goWait(f func()) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		f()
		return
	}
	w.wg.Add(1)
	w.mu.Unlock()
	go func() {
		defer w.wg.Done()
		f()
	}()
}

func (w *waiters) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.wg.Wait()
}
