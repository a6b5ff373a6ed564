// Package broker is the issuer's embedded MQTT broker (mochi-mqtt): with
// it a single machine runs the whole system with no other server. Devices
// log in with their id and the secret from the device credentials file
// (issuer/devices); an ACL gives each device its own topics only, and the
// issuer's own service user everything under the topic root, shared
// subscriptions included. Retained messages and last wills work as in any
// MQTT 3.1.1 broker.
package broker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"agoratokens/brokertls"
	"agoratokens/clock"
	"agoratokens/internal/logthrottle"
	"agoratokens/wire"
)

// DefaultListen is the broker's address when Config.Listen is empty.
const DefaultListen = "127.0.0.1:1883"

// maxPacketSize bounds an MQTT packet. It is twice wire.MaxPayload so
// that the issuer, not the broker, answers a request a little too large;
// a client sending a larger packet is disconnected.
const maxPacketSize = 2 * wire.MaxPayload

// maxWritesPending bounds the packets queued for one client. Beyond it
// the broker drops what it would send the client (a QoS 1 message is
// retried by its sender). With maxPacketSize it bounds what a client
// that reads slowly (the issuer under a flood) costs: 32 MiB.
const maxWritesPending = 1024

// Config configures the embedded broker.
type Config struct {
	// Listen is the TCP address, e.g. "127.0.0.1:1883" ("127.0.0.1:0"
	// picks a free port; see Addr). Empty means DefaultListen.
	Listen string
	// TLSCertFile and TLSKeyFile, both or neither, make the listener
	// speak TLS.
	TLSCertFile, TLSKeyFile string
	// CredentialsFile is the device credentials file (issuer/devices).
	// A missing file means no devices yet.
	CredentialsFile string
	// TopicRoot prefixes every topic; empty means wire.DefaultRoot.
	TopicRoot string
	// ServiceUser and ServicePassword are the issuer's own login: it may
	// publish and subscribe anywhere under TopicRoot, through shared
	// subscriptions too. Both are required.
	ServiceUser, ServicePassword string
	// Logger receives the broker's logs; nil discards them.
	Logger *slog.Logger
}

// Broker is the embedded MQTT broker.
type Broker struct {
	cfg      Config
	topics   wire.Topics
	tlsConf  *tls.Config
	log      *slog.Logger
	auth     *authHook
	ready    chan struct{}
	started  atomic.Bool
	mu       sync.Mutex
	listener *listeners.Net
	server   *mqtt.Server
}

// New validates cfg, fills defaults and reads the credentials file once,
// so that a broken file stops the issuer before it listens.
func New(cfg Config) (*Broker, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return nil, fmt.Errorf("broker listen %q: %w", cfg.Listen, err)
	}
	if cfg.TopicRoot == "" {
		cfg.TopicRoot = wire.DefaultRoot
	}
	if err := wire.ValidateRoot(cfg.TopicRoot); err != nil {
		return nil, fmt.Errorf("broker topic root: %w", err)
	}
	if cfg.CredentialsFile == "" {
		return nil, errors.New("broker credentials file is not set")
	}
	if cfg.ServiceUser == "" || cfg.ServicePassword == "" {
		return nil, errors.New("broker service user and password must both be set")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		cfg:    cfg,
		topics: wire.NewTopics(cfg.TopicRoot),
		log:    cfg.Logger,
		ready:  make(chan struct{}),
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("broker TLS needs both a certificate file and a key file")
	}
	if cfg.TLSCertFile != "" {
		pair, err := brokertls.KeyPair("tls_cert_file", cfg.TLSCertFile, "tls_key_file", cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker TLS certificate: %w", err)
		}
		b.tlsConf = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	auth, err := newAuthHook(authConfig{
		topics:          b.topics,
		credentialsFile: cfg.CredentialsFile,
		serviceUser:     cfg.ServiceUser,
		serviceHash:     sha256.Sum256([]byte(cfg.ServicePassword)),
		log:             b.log,
		clock:           clock.Real(),
	})
	if err != nil {
		return nil, err
	}
	if auth.creds.Load().Has(cfg.ServiceUser) {
		b.log.Warn("a device has the service user's name and cannot log in", "device", cfg.ServiceUser)
	}
	b.auth = auth
	return b, nil
}

// Run listens and serves until ctx ends, then disconnects every client
// and closes the listener. It returns an error if it cannot listen.
func (b *Broker) Run(ctx context.Context) error {
	if !b.started.CompareAndSwap(false, true) {
		return errors.New("broker is already running")
	}
	srv := mqtt.New(&mqtt.Options{
		// Tagged by the caller; never a payload (see mochiHandler).
		Logger:                 slog.New(newMochiHandler(b.log.Handler(), clock.Real())),
		InlineClient:           false,
		SysTopicResendInterval: 10,
		Capabilities:           capabilities(),
	})
	if err := srv.AddHook(b.auth, nil); err != nil {
		return fmt.Errorf("broker auth hook: %w", err)
	}
	if err := srv.AddHook(newFloodHook(b.cfg.ServiceUser, clock.Real(), logthrottle.New(b.log, clock.Real(), 0, 0)), nil); err != nil {
		return fmt.Errorf("broker flood hook: %w", err)
	}
	ln, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("broker listen %s: %w", b.cfg.Listen, err)
	}
	var accept net.Listener = newClosingListener(ln)
	if b.tlsConf != nil {
		accept = tls.NewListener(accept, b.tlsConf)
	}
	tcp := listeners.NewNet("devices", accept)
	if err := srv.AddListener(tcp); err != nil {
		_ = accept.Close()
		return fmt.Errorf("broker listen %s: %w", b.cfg.Listen, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return fmt.Errorf("broker serve: %w", err)
	}
	b.mu.Lock()
	b.server, b.listener = srv, tcp
	b.mu.Unlock()
	b.log.Info("broker listening", "addr", tcp.Address(), "tls", b.tlsConf != nil,
		"devices", b.auth.creds.Load().Len(), "topic_root", b.topics.Root)
	close(b.ready)
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		return fmt.Errorf("broker close: %w", err)
	}
	return nil
}

// capabilities are mochi's defaults with bounded packets and queues.
func capabilities() *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	c.MaximumPacketSize = maxPacketSize
	c.MaximumClientWritesPending = maxWritesPending
	return c
}

// Ready is closed once the broker listens.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// Addr is the address the broker listens on, once Ready ("" before).
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.listener == nil {
		return ""
	}
	return b.listener.Address()
}

// Reload re-reads the credentials file (on SIGHUP). Devices removed from
// the file are disconnected; a broken file keeps the old credentials and
// returns the error.
func (b *Broker) Reload() error {
	removed, err := b.auth.reload()
	if err != nil {
		return err
	}
	b.mu.Lock()
	srv := b.server
	b.mu.Unlock()
	if srv == nil || len(removed) == 0 {
		return nil
	}
	for _, cl := range srv.Clients.GetAll() {
		if _, gone := removed[string(cl.Properties.Username)]; gone && !cl.Closed() {
			b.log.Info("disconnecting removed device", "device", string(cl.Properties.Username), "client", cl.ID)
			_ = srv.DisconnectClient(cl, notAuthorized)
		}
	}
	return nil
}

// checkService compares a password with the service password's hash in
// constant time.
func checkService(want [sha256.Size]byte, password []byte) bool {
	got := sha256.Sum256(password)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}
