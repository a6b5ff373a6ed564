package issuer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sync/errgroup"

	"agoratokens/buildinfo"
	"agoratokens/issuer/broker"
)

// serviceUser is the issuer's login on its embedded broker.
const serviceUser = "agora-token-issuer"

// brokerConn is how the service reaches its broker.
type brokerConn struct {
	url      string
	username string
	password Secret
	tls      *tls.Config
}

// brokerConn starts the embedded broker when configured (in g, stopped by
// the returned func) and says how to connect to the broker.
func (s *Service) brokerConn(ctx context.Context, g *errgroup.Group, cfg *Config) (brokerConn, func(), error) {
	e := cfg.Broker.Embedded
	if e == nil {
		conn := brokerConn{url: cfg.Broker.URL, username: cfg.Broker.Username, password: cfg.BrokerPassword()}
		if cfg.Broker.CAFile != "" || cfg.Broker.CertFile != "" {
			t, err := clientTLS(cfg.Broker)
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
	password := Secret{v: hex.EncodeToString(b[:])}
	br, err := broker.New(broker.Config{
		Listen: e.Listen, TLSCertFile: e.TLSCertFile, TLSKeyFile: e.TLSKeyFile,
		CredentialsFile: e.CredentialsFile, TopicRoot: cfg.TopicRoot,
		ServiceUser: serviceUser, ServicePassword: password.v,
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
		t, err := pinnedTLS(e.TLSCertFile)
		if err != nil {
			stop()
			return brokerConn{}, nil, err
		}
		conn.url, conn.tls = "ssl://"+net.JoinHostPort(host, port), t
	}
	return conn, stop, nil
}

// pinnedTLS trusts exactly the embedded broker's own certificate: the
// issuer talks to itself over loopback, where the certificate's names
// need not match.
func pinnedTLS(certFile string) (*tls.Config, error) {
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("broker.embedded.tls_cert_file: %w", err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, errors.New("broker.embedded.tls_cert_file: no PEM certificate")
	}
	want := blk.Bytes
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], want) {
				return errors.New("embedded broker presented an unexpected certificate")
			}
			return nil
		},
	}, nil
}

// clientTLS builds the TLS config for an ssl:// broker.
func clientTLS(b BrokerConfig) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if b.CAFile != "" {
		pemBytes, err := os.ReadFile(b.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, errors.New("broker.ca_file: no PEM certificate in it")
		}
		t.RootCAs = pool
	}
	if b.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker.cert_file/key_file: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
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
