package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	mqtt "github.com/eclipse/paho.mqtt.golang"

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
type mqttSource struct {
	cfg    *Config
	device string
	topics wire.Topics
	clk    clock.Clock
	log    *slog.Logger
	client mqtt.Client
	hooks  TransportHooks

	connected atomic.Bool
	// resubscribe asks Run to try the token-topic subscription again,
	// after a backoff, when the broker refused or did not answer it.
	resubscribe chan struct{}
	mu          sync.Mutex
	pending     map[string]chan *wire.Reply
	status      *wire.DeviceStatus
}

func newMQTT(cfg *Config, device string, clk clock.Clock, log *slog.Logger) (*mqttSource, error) {
	m := &mqttSource{cfg: cfg, device: device, topics: wire.NewTopics(cfg.TopicRoot), clk: clk,
		log: log, pending: map[string]chan *wire.Reply{}, resubscribe: make(chan struct{}, 1)}
	b := cfg.Broker
	opts := mqtt.NewClientOptions().AddBroker(b.URL).SetClientID(device).
		SetCleanSession(false).SetKeepAlive(b.KeepAlive).
		SetAutoReconnect(true).SetMaxReconnectInterval(cfg.Backoff.Max).
		SetConnectTimeout(cfg.RequestTimeout).SetWriteTimeout(cfg.RequestTimeout).
		SetOrderMatters(false).
		SetOnConnectHandler(m.onConnect).
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
	will, err := wire.Encode(offlineStatus())
	if err != nil {
		return nil, err
	}
	opts.SetBinaryWill(m.topics.Status(device), will, 1, true)
	if b.CAFile != "" || b.CertFile != "" || len(b.URL) > 3 && b.URL[:3] == "ssl" {
		tc, err := brokertls.Client("broker.", brokertls.Files{CAFile: b.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile})
		if err != nil {
			return nil, err
		}
		opts.SetTLSConfig(tc)
	}
	m.client = mqtt.NewClient(opts)
	return m, nil
}

func offlineStatus() wire.DeviceStatus {
	return wire.DeviceStatus{V: wire.SchemaVersion, State: wire.StateOffline, Agent: buildinfo.Version}
}

// Run connects (retrying with backoff), lets paho reconnect after a loss,
// and on shutdown publishes the offline status and disconnects.
func (m *mqttSource) Run(ctx context.Context, h TransportHooks) error {
	m.hooks = h
	bo := &backoff.ExponentialBackOff{
		InitialInterval: m.cfg.Backoff.Initial, RandomizationFactor: m.cfg.Backoff.Jitter,
		Multiplier: m.cfg.Backoff.Multiplier, MaxInterval: m.cfg.Backoff.Max,
		Stop: backoff.Stop, Clock: m.clk,
	}
	bo.Reset()
	for failures := 1; ; failures++ {
		tok := m.client.Connect()
		err := waitToken(ctx, tok)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			m.client.Disconnect(0)
			return nil
		}
		wait := bo.NextBackOff()
		if failures&(failures-1) == 0 {
			m.log.Warn("cannot connect to the broker; retrying", "broker", redactURL(m.cfg.Broker.URL),
				"failures", failures, "retry_in", wait.Round(time.Millisecond), "err", err)
		}
		t := m.clk.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
	// Connected: paho reconnects by itself after a loss; a refused
	// subscription is retried here, with the same backoff.
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			return nil
		case <-m.resubscribe:
		}
		t := m.clk.NewTimer(bo.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			m.shutdown()
			return nil
		case <-t.C():
		}
		if m.client.IsConnectionOpen() && m.subscribe(m.client) {
			bo.Reset()
		}
	}
}

func (m *mqttSource) shutdown() {
	if m.client.IsConnectionOpen() {
		if p, err := wire.Encode(offlineStatus()); err == nil {
			tok := m.client.Publish(m.topics.Status(m.device), 1, true, p)
			if !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
				m.log.Warn("could not publish the offline status", "err", tok.Error())
			}
		}
	}
	m.connected.Store(false)
	m.client.Disconnect(250)
	m.log.Info("disconnected from the broker")
}

func waitToken(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *mqttSource) onConnect(c mqtt.Client) {
	m.subscribe(c)
}

// subscribe subscribes to the device's token topic and, once the broker
// granted it, reports the connection up. A refused or unanswered
// subscription (a broker whose ACL does not match, a broker too busy) is
// logged and retried by Run with backoff; paho would not do it, and
// disconnecting instead would stop paho's reconnection for good.
func (m *mqttSource) subscribe(c mqtt.Client) bool {
	topic := m.topics.Token(m.device)
	tok := c.Subscribe(topic, 1, m.onMessage)
	var err error
	if !tok.WaitTimeout(m.cfg.RequestTimeout) {
		err = errors.New("no answer from the broker")
	} else if err = tok.Error(); err == nil {
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
		select {
		case m.resubscribe <- struct{}{}:
		default:
		}
		return false
	}
	m.connected.Store(true)
	m.log.Info("connected to the broker", "broker", redactURL(m.cfg.Broker.URL))
	m.mu.Lock()
	st := m.status
	m.mu.Unlock()
	if st == nil {
		st = &wire.DeviceStatus{V: wire.SchemaVersion, State: wire.StateOnline, Agent: buildinfo.Version}
	}
	m.publishStatus(*st)
	if m.hooks.Connected != nil {
		m.hooks.Connected()
	}
	return true
}

func (m *mqttSource) onLost(_ mqtt.Client, err error) {
	m.connected.Store(false)
	m.log.Warn("lost the broker; reconnecting", "err", err)
	if m.hooks.Disconnected != nil {
		m.hooks.Disconnected()
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

// Fetch publishes a request on the device's request topic and waits for
// the reply with the same id on its token topic.
func (m *mqttSource) Fetch(ctx context.Context, req wire.Request) (*wire.Reply, error) {
	if !m.connected.Load() {
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
	if err := waitToken(ctx, m.client.Publish(m.topics.Req(m.device), 1, false, p)); err != nil {
		return nil, fmt.Errorf("publish request: %w", err)
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
	if m.connected.Load() && m.client.IsConnectionOpen() {
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
	if m.connected.Load() {
		m.publishStatus(st)
	}
}

func (m *mqttSource) publishStatus(st wire.DeviceStatus) {
	p, err := wire.Encode(st)
	if err != nil {
		m.log.Error("cannot encode status", "err", err)
		return
	}
	tok := m.client.Publish(m.topics.Status(m.device), 1, true, p)
	go func() {
		if tok.WaitTimeout(m.cfg.RequestTimeout) && tok.Error() != nil {
			m.log.Warn("cannot publish status", "err", tok.Error())
		}
	}()
}
