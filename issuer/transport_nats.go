package issuer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"agoratokens/wire"
)

// The NATS transport. The devices speak MQTT to the MQTT listeners of a
// NATS cluster; the issuer speaks NATS to the same cluster. Requests
// (agora.v1.devices.<id>.req) arrive through a queue subscription, so
// each goes to one replica of the group; replies and pushes are
// published on the device's token subject, which nats-server delivers
// to the device's MQTT subscription. Everything past the door (admit)
// is the MQTT transport's: rate limits, admission bounds, workers,
// replay cache, policy, signing, metrics.
//
// The client library owns reconnection and failover across
// broker.nats.servers (its subscriptions are restored on each new
// connection); the issuer only retries the first connection, with the
// cause in the log.

// natsRequest is one request off the queue subscription. NATS core has
// nothing to acknowledge: a request lost with a connection is the
// device's to retry, as a lost reply is.
type natsRequest struct{ m *nats.Msg }

func (r natsRequest) Payload() []byte { return r.m.Data }
func (r natsRequest) Ack()            {}

// natsOutlet publishes on the NATS connection. A NATS publish is
// buffered by the client and has no broker acknowledgement, so its
// token is done at once. NATS core has no retained messages: a
// retained publish (the issuer status) goes over the fleet link, where
// nats-server's MQTT layer keeps it, when there is one.
type natsOutlet struct {
	nc    *nats.Conn
	fleet mqtt.Client // nil without broker.nats MQTT URLs
}

func (o natsOutlet) publish(topic string, qos byte, retained bool, payload []byte) mqtt.Token {
	if retained && o.fleet != nil {
		if !o.fleet.IsConnectionOpen() {
			// Nothing to keep: onFleetConnect publishes the state at
			// every connect, and the link's last will says offline.
			return doneToken{}
		}
		return o.fleet.Publish(topic, qos, true, payload)
	}
	return doneToken{err: o.nc.Publish(natsSubject(topic), payload)}
}

func (o natsOutlet) open() bool { return o.nc.IsConnected() }

// doneToken is an mqtt.Token that is already complete.
type doneToken struct{ err error }

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (doneToken) Wait() bool                     { return true }
func (doneToken) WaitTimeout(time.Duration) bool { return true }
func (doneToken) Done() <-chan struct{}          { return closedCh }
func (t doneToken) Error() error                 { return t.err }

// runNATS connects to the NATS cluster and serves until ctx ends, then
// drains (see serveRequests).
func (s *Service) runNATS(ctx context.Context, n *NATSConfig) error {
	cfg := s.state.Load().cfg
	servers := strings.Join(n.Servers, ",")
	opts := []nats.Option{
		nats.Name(s.name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(connectInitial),
		nats.ReconnectJitter(connectInitial/5, connectInitial/5),
		nats.Timeout(opTimeout),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.ready.Store(false)
			if !s.stopped.Load() {
				s.connLog.Warn("NATS connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			if s.stopped.Load() {
				return
			}
			s.ready.Store(true)
			s.log.Info("NATS reconnected", "server", redactURL(nc.ConnectedUrlRedacted()))
			s.publishStatus(wire.StateOnline)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.connLog.Warn("NATS error", "err", err)
		}),
	}
	switch {
	case n.CredentialsFile != "":
		opts = append(opts, nats.UserCredentials(n.CredentialsFile))
	case n.User != "":
		opts = append(opts, nats.UserInfo(n.User, cfg.BrokerPassword().Reveal()))
	}
	fleet, err := s.fleetLink(n, cfg)
	if err != nil {
		return err
	}
	var nc *nats.Conn
	var sub *nats.Subscription
	connect := func() bool {
		bo := &backoff.ExponentialBackOff{
			InitialInterval: connectInitial, RandomizationFactor: 0.2, Multiplier: 2,
			MaxInterval: connectMax, Stop: backoff.Stop, Clock: s.clk,
		}
		bo.Reset()
		for failures := 1; ; failures++ {
			c, err := nats.Connect(servers, opts...)
			if err == nil {
				if sub, err = s.subscribeNATS(c, n, fleet); err == nil {
					nc = c
					if fleet != nil {
						// In the background: requests are served
						// while the MQTT listeners are out of reach.
						fleet.Connect()
					}
					return true
				}
				c.Close()
			}
			wait := bo.NextBackOff()
			// The URLs hold no user or password (config validation).
			s.connLog.Warn("cannot connect to NATS; retrying", "servers", servers,
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
	return s.serveRequests(ctx, connect, func() { s.shutdownNATS(nc, sub, fleet) })
}

// fleetLink is the NATS transport's MQTT connection for the fleet
// state: the devices' retained statuses, the replicas' presence, the
// rotation campaign and the issuer status with its last will. NATS
// core has no retained messages; nats-server keeps them in its MQTT
// layer, so the replica reaches them over the cluster's MQTT listeners
// (broker.nats.mqtt_urls, else agent_urls), as the issuer's user, with
// paho failing over between them. Past the connection, the fleet code
// is the MQTT transport's. Nil (and a warning) without MQTT URLs.
func (s *Service) fleetLink(n *NATSConfig, cfg *Config) (mqtt.Client, error) {
	if err := n.fleetLogin(); err != nil {
		s.log.Warn("no fleet view: fleet status, rotation campaigns and the fleet page see no device; requests are served", "why", err)
		return nil, nil
	}
	conn := brokerConn{username: n.User, password: cfg.BrokerPassword(), fleetOnly: true}
	o, err := s.mqttOptions(n.FleetURLs(), conn, s.onFleetConnect)
	if err != nil {
		return nil, err
	}
	// The first connection is retried in the background too: the
	// request path does not wait for it.
	o.SetConnectRetry(true).SetConnectRetryInterval(connectInitial)
	c := mqtt.NewClient(o)
	s.clientV.Store(c)
	return c, nil
}

// onFleetConnect (re)subscribes the fleet link after every connect.
func (s *Service) onFleetConnect(c mqtt.Client) {
	if s.stopped.Load() {
		return
	}
	// QoS 0: nats-server backs an MQTT QoS 1 subscription with a
	// JetStream consumer, which lives on one node (configs/nats:
	// consumer_replicas 1); when that node dies the subscription
	// silently stops delivering, while a QoS 0 one, held by the node
	// the link is connected to, fails over with the connection.
	s.subscribeFleet(c, 0)
	st := c.Subscribe(s.topics.IssuerStatus(), 0, s.onIssuerStatus)
	if !st.WaitTimeout(opTimeout) || st.Error() != nil {
		s.log.Warn("subscribe to the issuer status failed", "err", st.Error())
	}
	s.publishStatus(wire.StateOnline)
	s.log.Info("fleet state connected over MQTT", "issuer", s.name)
}

// subscribeNATS joins the queue group on every device's request subject
// and, once the server has taken the subscription, reports the service
// ready.
func (s *Service) subscribeNATS(nc *nats.Conn, n *NATSConfig, fleet mqtt.Client) (*nats.Subscription, error) {
	subject := natsSubject(s.topics.AllReqs())
	sub, err := nc.QueueSubscribe(subject, n.QueueGroup, func(m *nats.Msg) {
		s.admit("nats", mqttTopic(m.Subject), natsRequest{m})
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	// A permission violation comes back asynchronously: after a round
	// trip it is the connection's last error.
	if err := nc.FlushTimeout(opTimeout); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	if err := nc.LastError(); err != nil {
		return nil, fmt.Errorf("subscribe %s (check the issuer user's permissions): %w", subject, err)
	}
	s.setOut(natsOutlet{nc: nc, fleet: fleet})
	s.publishStatus(wire.StateOnline)
	s.connected.Store(true)
	s.ready.Store(true)
	s.startOnce.Do(func() { close(s.started) })
	s.log.Info("connected to NATS and serving", "subject", subject, "queue_group", n.QueueGroup,
		"server", redactURL(nc.ConnectedUrlRedacted()), "issuer", s.name)
	return sub, nil
}

// shutdownNATS leaves the queue group (new requests go to the other
// replicas), lets the requests in flight finish, says offline and
// closes the connection.
func (s *Service) shutdownNATS(nc *nats.Conn, sub *nats.Subscription, fleet mqtt.Client) {
	s.ready.Store(false)
	s.stopFleet()
	// Drain, not Unsubscribe: the requests the server already handed to
	// this client are still admitted and answered instead of vanishing
	// in the client's buffer; only then does the door close.
	closed := sub.StatusChanged(nats.SubscriptionClosed)
	if err := sub.Drain(); err != nil {
		s.log.Warn("leaving the queue group on shutdown failed", "err", err)
	} else {
		t := s.clk.NewTimer(opTimeout)
		select {
		case <-closed:
		case <-t.C():
			s.log.Warn("leaving the queue group on shutdown: no answer within the timeout", "timeout", opTimeout)
		}
		t.Stop()
	}
	s.stopped.Store(true)
	if nc.IsConnected() {
		s.drain(drainTimeout)
		s.publishStatus(wire.StateOffline)
		if err := nc.FlushTimeout(opTimeout); err != nil {
			s.log.Warn("flush on shutdown failed", "err", err)
		}
	} else {
		s.drain(time.Second)
	}
	nc.Close()
	if fleet != nil {
		fleet.Disconnect(1000)
	}
	s.log.Info("stopped")
}
