package issuer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"

	"golang.org/x/sync/errgroup"

	"agoratokens/brokertls"
	"agoratokens/buildinfo"
	"agoratokens/issuer/broker"
	"agoratokens/secretfile"
)

// serviceUser is the issuer's login on its embedded broker.
const serviceUser = "agora-token-issuer"

// brokerConn is how the service reaches its broker.
type brokerConn struct {
	url      string
	username string
	password Secret
	tls      *tls.Config
	// fleetOnly marks the NATS transport's MQTT connection, which
	// carries the fleet state and no requests.
	fleetOnly bool
}

// brokerConn starts the embedded broker when configured (in g, stopped by
// the returned func) and says how to connect to the broker.
func (s *Service) brokerConn(ctx context.Context, g *errgroup.Group, cfg *Config) (brokerConn, func(), error) {
	e := cfg.Broker.Embedded
	if e == nil {
		conn := brokerConn{url: cfg.Broker.URL, username: cfg.Broker.Username, password: cfg.BrokerPassword()}
		if cfg.Broker.CAFile != "" || cfg.Broker.CertFile != "" {
			t, err := brokertls.Client("broker.", brokertls.Files{CAFile: cfg.Broker.CAFile, CertFile: cfg.Broker.CertFile, KeyFile: cfg.Broker.KeyFile})
			if err != nil {
				return brokerConn{}, nil, err
			}
			conn.tls = t
		}
		return conn, func() {}, nil
	}
	// A fresh password per run: only this process knows it.
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return brokerConn{}, nil, err
	}
	password := secretfile.NewSecret(hex.EncodeToString(b[:]))
	br, err := broker.New(broker.Config{
		Listen: e.Listen, TLSCertFile: e.TLSCertFile, TLSKeyFile: e.TLSKeyFile,
		CredentialsFile: e.CredentialsFile, TopicRoot: cfg.TopicRoot,
		ServiceUser: serviceUser, ServicePassword: password.Reveal(),
		Logger: s.log.With("component", "broker"),
	})
	if err != nil {
		return brokerConn{}, nil, fmt.Errorf("embedded broker: %w", err)
	}
	bctx, stop := context.WithCancel(context.Background())
	g.Go(func() error { return br.Run(bctx) })
	select {
	case <-br.Ready():
	case <-ctx.Done():
		stop()
		return brokerConn{}, nil, fmt.Errorf("embedded broker did not start: %w", context.Cause(ctx))
	}
	s.embedded.Store(br)
	unlink, err := writeServicePassword(cfg.StateDir, password)
	if err != nil {
		s.log.Warn("cannot leave the broker login in the state dir; fleet and rotate commands cannot reach this broker", "err", err)
	}
	stopBroker := stop
	stop = func() { unlink(); stopBroker() }
	host, port, _ := net.SplitHostPort(br.Addr())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	conn := brokerConn{url: "tcp://" + net.JoinHostPort(host, port), username: serviceUser, password: password}
	if e.TLSCertFile != "" {
		t, err := brokertls.Pinned("broker.embedded.tls_cert_file", e.TLSCertFile)
		if err != nil {
			stop()
			return brokerConn{}, nil, err
		}
		conn.url, conn.tls = "ssl://"+net.JoinHostPort(host, port), t
	}
	return conn, stop, nil
}

// reloadBroker makes the embedded broker (if any) re-read its
// credentials.
func (s *Service) reloadBroker() error {
	if br := s.embedded.Load(); br != nil {
		if err := br.Reload(); err != nil {
			return fmt.Errorf("embedded broker credentials: %w", err)
		}
	}
	return nil
}

func version() string { return buildinfo.Version }
