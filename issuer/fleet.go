package issuer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"agoratokens/atomicfile"
	"agoratokens/brokertls"
	"agoratokens/wire"
)

// The fleet side of the issuer: the registry of devices built from
// their retained statuses, the per-kid expiry ledger, the replicas'
// presence and the rotation campaign (campaign.go).

// ServicePasswordFile, in the state dir, holds the embedded broker's
// per-run login of the issuer while serve runs (mode 0600), so that the
// fleet, rotate and certificate commands can reach that broker.
const ServicePasswordFile = "embedded-broker.password"

// heartbeat is how often a replica republishes its own status; a replica
// silent for replicaStale is taken as gone.
const (
	heartbeat    = 20 * time.Second
	replicaStale = 3 * heartbeat
)

// fleetState is the service's fleet half.
type fleetState struct {
	registry *Registry
	ledger   *expiryLedger

	mu       sync.Mutex
	replicas map[string]time.Time // other replicas online, when last heard
	// replicaStatus is each other replica's last status (the kid it
	// signs with, for a campaign's progress).
	replicaStatus map[string]wire.IssuerStatus
	campaign      *wire.Campaign  // the campaign followed, nil before one
	pushed        map[string]bool // devices pushed in the campaign
	dirty         bool            // pushed changed since it was saved
	dir           string          // the state dir
	stateLogs     rateLog
	runOnce       sync.Once
	stop          chan struct{}  // closed at shutdown
	wg            sync.WaitGroup // the fleet loop
	wake          chan struct{}  // something changed: look at the work again
	announced     chan struct{}  // the replica's status changed: publish it
	repNext       chan struct{}  // closed at the next change of replicas
}

// initFleet builds the registry and reads the ledger (New).
func (s *Service) initFleet(cfg *Config) {
	s.fleet.registry = NewRegistry(s.topics, s.opts.MaxDevices, s.log.With("component", "fleet"), s.clk.Wall)
	s.fleet.ledger = openLedger(cfg.StateDir, s.log)
	s.fleet.replicas = map[string]time.Time{}
	s.fleet.replicaStatus = map[string]wire.IssuerStatus{}
	s.fleet.pushed = map[string]bool{}
	s.fleet.dir = cfg.StateDir
	s.fleet.stateLogs = rateLog{every: time.Minute, now: time.Now}
	s.fleet.stop = make(chan struct{})
	s.fleet.wake = make(chan struct{}, 1)
	s.fleet.announced = make(chan struct{}, 1)
	s.fleet.repNext = make(chan struct{})
	// A status wakes the campaign only when it shows work: a device
	// online with a token of another kid.
	s.fleet.registry.changed = func(d DeviceRecord) {
		s.fleet.mu.Lock()
		cp := s.fleet.campaign
		s.fleet.mu.Unlock()
		if cp != nil && d.Online && d.HoldsOther(cp.To) {
			s.fleet.poke()
		}
	}
	reg := s.fleet.registry
	s.metrics.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agora_issuer_fleet_devices",
			Help: "Devices in the fleet registry (from their retained statuses).",
		}, func() float64 { return float64(reg.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "agora_issuer_fleet_statuses_ignored_total",
			Help: "Device statuses ignored: malformed, or the registry full.",
		}, func() float64 { return float64(reg.Malformed() + reg.Overflow()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agora_issuer_campaign_pushed",
			Help: "Devices this replica pushed in the rotation campaign it follows.",
		}, func() float64 {
			s.fleet.mu.Lock()
			defer s.fleet.mu.Unlock()
			return float64(len(s.fleet.pushed))
		}),
	)
}

// announce asks the fleet loop to publish the replica's status (from a
// message handler, which must not wait on a publish).
func (f *fleetState) announce() {
	select {
	case f.announced <- struct{}{}:
	default:
	}
}

func (f *fleetState) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Fleet is the registry of the devices, from their retained statuses.
func (s *Service) Fleet() *Registry { return s.fleet.registry }

// LatestExpiry returns per kid the latest expiry of the tokens this
// issuer signed (rounded up by a minute), across restarts.
func (s *Service) LatestExpiry() map[string]int64 { return s.fleet.ledger.snapshot() }

// subscribeFleet subscribes at qos to the device statuses, the
// replicas' statuses and the campaign (from onConnect) and starts the
// fleet loop once. Everything there is retained, and the session
// clean: what a lost connection missed comes again at the next
// subscription, whatever the QoS.
func (s *Service) subscribeFleet(c mqtt.Client, qos byte) {
	for filter, h := range map[string]mqtt.MessageHandler{
		s.topics.AllStatuses(): s.onDeviceStatus,
		s.topics.AllReplicas(): s.onReplicaStatus,
		s.topics.Campaign():    s.onCampaign,
	} {
		t := c.Subscribe(filter, qos, h)
		if !t.WaitTimeout(opTimeout) || t.Error() != nil {
			s.log.Error("subscribe failed; the fleet view is incomplete", "filter", filter, "err", t.Error())
			continue
		}
		if code := t.(*mqtt.SubscribeToken).Result()[filter]; code >= 0x80 {
			s.log.Error("the broker refused a fleet subscription (check its ACL)", "filter", filter)
		}
	}
	s.publishReplica(wire.StateOnline)
	s.fleet.poke() // after a reconnect: the campaign goes on
	s.fleet.runOnce.Do(func() {
		s.fleet.wg.Add(1)
		go func() {
			defer s.fleet.wg.Done()
			s.fleetLoop()
		}()
	})
}

// stopFleet ends the fleet loop and clears this replica's presence
// (from shutdown, before disconnecting).
func (s *Service) stopFleet() {
	select {
	case <-s.fleet.stop:
		return
	default:
	}
	close(s.fleet.stop)
	s.fleet.wg.Wait()
	s.savePushed()
	if c := s.client(); c != nil && c.IsConnectionOpen() {
		t := c.Publish(s.topics.ReplicaStatus(s.name), 1, true, []byte{})
		t.WaitTimeout(opTimeout)
	}
}

func (s *Service) onDeviceStatus(_ mqtt.Client, m mqtt.Message) {
	defer m.Ack()
	s.fleet.registry.Observe(m.Topic(), m.Payload())
}

// onReplicaStatus tracks the other replicas, to share campaign work.
func (s *Service) onReplicaStatus(_ mqtt.Client, m mqtt.Message) {
	defer m.Ack()
	name := strings.TrimPrefix(m.Topic(), s.topics.ReplicaStatus(""))
	if name == s.name || wire.ValidateName("issuer", name) != nil {
		return
	}
	var st wire.IssuerStatus
	gone := len(m.Payload()) == 0
	if !gone {
		if err := wire.Decode(m.Payload(), &st); err != nil {
			s.log.Warn("ignoring a malformed replica status", "replica", name, "err", err)
			return
		}
		gone = st.State != wire.StateOnline
	}
	s.fleet.mu.Lock()
	if gone {
		delete(s.fleet.replicas, name)
		delete(s.fleet.replicaStatus, name)
	} else {
		s.fleet.replicas[name] = time.Now()
		s.fleet.replicaStatus[name] = st
	}
	s.fleet.replicasChangedLocked()
	s.fleet.mu.Unlock()
	s.fleet.poke()
}

// replicaGone is called when another replica's last will reached the
// shared issuer status: its presence is cleared for everyone.
func (s *Service) replicaGone(name string) {
	if name == "" || name == s.name || wire.ValidateName("issuer", name) != nil {
		return
	}
	s.fleet.mu.Lock()
	_, known := s.fleet.replicas[name]
	delete(s.fleet.replicas, name)
	delete(s.fleet.replicaStatus, name)
	s.fleet.replicasChangedLocked()
	s.fleet.mu.Unlock()
	if known {
		if c := s.client(); c != nil {
			c.Publish(s.topics.ReplicaStatus(name), 1, true, []byte{})
		}
		s.fleet.poke()
	}
}

func (f *fleetState) replicasChangedLocked() {
	close(f.repNext)
	f.repNext = make(chan struct{})
}

// ReplicasChanged returns a channel closed when the replicas known next
// change.
func (s *Service) ReplicasChanged() <-chan struct{} {
	s.fleet.mu.Lock()
	defer s.fleet.mu.Unlock()
	return s.fleet.repNext
}

// Replicas returns the names of the replicas sharing campaign work,
// this one included, sorted.
func (s *Service) Replicas() []string {
	s.fleet.mu.Lock()
	defer s.fleet.mu.Unlock()
	return s.replicasLocked(time.Now())
}

// replicaStatuses is the last status of every other replica online
// (heard within replicaStale), with self added as this one's.
func (s *Service) replicaStatuses(self wire.IssuerStatus) map[string]wire.IssuerStatus {
	s.fleet.mu.Lock()
	defer s.fleet.mu.Unlock()
	out := map[string]wire.IssuerStatus{s.name: self}
	now := time.Now()
	for n, at := range s.fleet.replicas {
		if st, ok := s.fleet.replicaStatus[n]; ok && now.Sub(at) < replicaStale {
			out[n] = st
		}
	}
	return out
}

func (s *Service) replicasLocked(now time.Time) []string {
	out := []string{s.name}
	for n, at := range s.fleet.replicas {
		if now.Sub(at) < replicaStale {
			out = append(out, n)
		}
	}
	sortStrings(out)
	return out
}

// publishReplica publishes this replica's own retained status.
func (s *Service) publishReplica(state string) {
	c := s.client()
	if c == nil {
		return
	}
	st := s.status(state)
	st.Active = s.state.Load().signer.Active()
	s.fleet.mu.Lock()
	if s.fleet.campaign != nil {
		st.Campaign = s.fleet.campaign.ID
		st.Pushed = len(s.fleet.pushed)
	}
	s.fleet.mu.Unlock()
	st.LatestExpiry = s.fleet.ledger.snapshot()
	b, err := wire.Encode(st)
	if err != nil {
		s.log.Error("encode replica status", "err", err)
		return
	}
	t := c.Publish(s.topics.ReplicaStatus(s.name), 1, true, b)
	if !t.WaitTimeout(opTimeout) || t.Error() != nil {
		s.log.Warn("publish replica status failed", "err", t.Error())
	}
}

// ToolOptions returns MQTT client options for an operator command
// (fleet status, rotate) to reach the issuer's broker as the issuer's
// user. With the embedded broker that works only while serve runs: the
// login is the running service's, from the state dir.
func ToolOptions(cfg *Config, clientID string) (*mqtt.ClientOptions, error) {
	o := mqtt.NewClientOptions().SetClientID(clientID).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(opTimeout).
		SetOrderMatters(true)
	if n := cfg.Broker.NATS; n != nil {
		// NATS keeps retained messages in its MQTT layer only: the
		// commands read and write the fleet state over the cluster's
		// MQTT listeners, as the issuer's user.
		if err := n.fleetLogin(); err != nil {
			return nil, err
		}
		for _, u := range n.FleetURLs() {
			o.AddBroker(u)
		}
		return o.SetUsername(n.User).SetPassword(cfg.BrokerPassword().Reveal()), nil
	}
	e := cfg.Broker.Embedded
	if e == nil {
		o.AddBroker(cfg.Broker.URL)
		user, pw := cfg.Broker.Username, cfg.BrokerPassword()
		if cfg.Broker.ToolUsername != "" {
			user, pw = cfg.Broker.ToolUsername, cfg.toolPassword
		}
		if user != "" {
			o.SetUsername(user)
		}
		if !pw.IsZero() {
			o.SetPassword(pw.Reveal())
		}
		if cfg.Broker.CAFile != "" || cfg.Broker.CertFile != "" {
			t, err := brokertls.Client("broker.", brokertls.Files{CAFile: cfg.Broker.CAFile, CertFile: cfg.Broker.CertFile, KeyFile: cfg.Broker.KeyFile})
			if err != nil {
				return nil, err
			}
			o.SetTLSConfig(t)
		}
		return o, nil
	}
	host, port, _ := net.SplitHostPort(e.Listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, port)
	pw, err := readSecretFile("state_dir", filepath.Join(cfg.StateDir, ServicePasswordFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, &NoBrokerError{Addr: addr, Reason: "no running serve has left its login in " + cfg.StateDir}
	}
	if err != nil {
		return nil, err
	}
	o.SetUsername(serviceUser).SetPassword(pw.Reveal())
	if e.TLSCertFile != "" {
		t, err := brokertls.Pinned("broker.embedded.tls_cert_file", e.TLSCertFile)
		if err != nil {
			return nil, err
		}
		o.AddBroker("ssl://" + addr).SetTLSConfig(t)
	} else {
		o.AddBroker("tcp://" + addr)
	}
	return o, nil
}

// NoBrokerError says that the embedded broker is not running, i.e. that
// serve is not.
type NoBrokerError struct {
	Addr   string
	Reason string
}

func (e *NoBrokerError) Error() string {
	return fmt.Sprintf("no broker: the config uses the embedded broker (%s), which runs only inside `agora-token-issuer serve`, and serve is not running (%s)", e.Addr, e.Reason)
}

// DialTool connects an operator command to the broker (see ToolOptions).
func DialTool(ctx context.Context, cfg *Config, prefix string) (mqtt.Client, error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	o, err := ToolOptions(cfg, prefix+"-"+hex.EncodeToString(b[:]))
	if err != nil {
		return nil, err
	}
	c := mqtt.NewClient(o)
	t := c.Connect()
	select {
	case <-t.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := t.Error(); err != nil {
		if cfg.Broker.Embedded != nil && errors.Is(err, syscall.ECONNREFUSED) {
			return nil, &NoBrokerError{Addr: cfg.Broker.Embedded.Listen, Reason: "nothing listens there"}
		}
		return nil, fmt.Errorf("connect broker: %w", err)
	}
	return c, nil
}

// Snapshot is the fleet as the retained statuses on the broker show it:
// the devices and the issuer replicas.
type Snapshot struct {
	Devices *Registry

	mu       sync.Mutex
	replicas map[string]wire.IssuerStatus
	campaign *wire.Campaign
}

// ReplicaStatuses returns the replicas' statuses by name.
func (sn *Snapshot) ReplicaStatuses() map[string]wire.IssuerStatus {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	out := make(map[string]wire.IssuerStatus, len(sn.replicas))
	for k, v := range sn.replicas {
		out[k] = v
	}
	return out
}

// Campaign returns the campaign retained on the broker, nil if none.
func (sn *Snapshot) Campaign() *wire.Campaign {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	return sn.campaign
}

// ReadSnapshot reads every retained device status, replica status and
// the campaign from the broker c is connected to. It knows it has them
// all when a marker it publishes to itself arrives: the broker queues
// the retained messages of a subscription before anything published
// after it, and the client hands them over in order.
//
// With live set the subscriptions stay, and the snapshot follows the
// broker until c disconnects.
func ReadSnapshot(ctx context.Context, c mqtt.Client, topics wire.Topics, log *slog.Logger, live bool) (*Snapshot, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	snap := &Snapshot{Devices: NewRegistry(topics, 0, log, time.Now), replicas: map[string]wire.IssuerStatus{}}
	var b [8]byte
	_, _ = rand.Read(b[:])
	marker := topics.Marker(hex.EncodeToString(b[:]))
	done := make(chan struct{})
	var once sync.Once
	subs := []struct {
		filter string
		h      mqtt.MessageHandler
	}{
		{topics.AllStatuses(), func(_ mqtt.Client, m mqtt.Message) { snap.Devices.Observe(m.Topic(), m.Payload()) }},
		{topics.AllReplicas(), func(_ mqtt.Client, m mqtt.Message) {
			name := strings.TrimPrefix(m.Topic(), topics.ReplicaStatus(""))
			var st wire.IssuerStatus
			snap.mu.Lock()
			defer snap.mu.Unlock()
			switch {
			case len(m.Payload()) == 0:
				delete(snap.replicas, name)
			case wire.Decode(m.Payload(), &st) == nil:
				snap.replicas[name] = st
			}
		}},
		{topics.Campaign(), func(_ mqtt.Client, m mqtt.Message) {
			var cp wire.Campaign
			if len(m.Payload()) > 0 && wire.Decode(m.Payload(), &cp) == nil {
				snap.mu.Lock()
				snap.campaign = &cp
				snap.mu.Unlock()
			}
		}},
		{marker, func(mqtt.Client, mqtt.Message) { once.Do(func() { close(done) }) }},
	}
	for _, sub := range subs {
		// QoS 0: the retained flood of a large fleet is not held back by
		// the broker's in-flight window, and order is kept.
		t := c.Subscribe(sub.filter, 0, sub.h)
		if !t.WaitTimeout(opTimeout) || t.Error() != nil {
			return nil, fmt.Errorf("subscribe %s: %v", sub.filter, t.Error())
		}
		if code := t.(*mqtt.SubscribeToken).Result()[sub.filter]; code >= 0x80 {
			return nil, fmt.Errorf("the broker refused the subscription to %s (check its ACL)", sub.filter)
		}
	}
	t := c.Publish(marker, 0, false, []byte("{}"))
	if !t.WaitTimeout(opTimeout) || t.Error() != nil {
		return nil, fmt.Errorf("publish marker: %v", t.Error())
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the retained statuses: %w", ctx.Err())
	}
	if !live {
		for _, sub := range subs {
			c.Unsubscribe(sub.filter).WaitTimeout(opTimeout)
		}
	}
	return snap, nil
}

// LatestExpiry merges the replicas' reports of the latest expiry per
// kid with the ones given (e.g. the local ledger), keeping the latest.
func (sn *Snapshot) LatestExpiry(local map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range local {
		out[k] = v
	}
	for _, r := range sn.ReplicaStatuses() {
		for k, v := range r.LatestExpiry {
			if v > out[k] {
				out[k] = v
			}
		}
	}
	return out
}

// writeServicePassword leaves the embedded broker's per-run login in
// the state dir for the operator commands; the returned func removes it.
func writeServicePassword(dir string, pw Secret) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return func() {}, err
	}
	path := filepath.Join(dir, ServicePasswordFile)
	if err := atomicfile.WritePrivate(path, []byte(pw.Reveal()+"\n")); err != nil {
		return func() {}, err
	}
	return func() { _ = os.Remove(path) }, nil
}
