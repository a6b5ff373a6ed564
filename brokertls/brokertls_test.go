package brokertls

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/internal/testcert"
)

// handshake runs one TLS handshake between a listener presenting
// serverCert and a client with cfg.
func handshake(t *testing.T, serverCert tls.Certificate, cfg *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serverCert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	cfg = cfg.Clone()
	cfg.ServerName = "127.0.0.1"
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

func TestClientVerifiesWithCAFile(t *testing.T) {
	dir := t.TempDir()
	cert, key := testcert.Write(t, dir, "broker", 0o600)
	pair, err := KeyPair("tls_cert_file", cert, "tls_key_file", key)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Client("broker.", Files{CAFile: cert, CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || len(cfg.Certificates) != 1 {
		t.Fatalf("config: min version %x, %d client certificates", cfg.MinVersion, len(cfg.Certificates))
	}
	if err := handshake(t, pair, cfg); err != nil {
		t.Fatalf("handshake with the CA file's broker: %v", err)
	}
	other, otherKey := testcert.Write(t, dir, "other", 0o600)
	otherPair, err := KeyPair("c", other, "k", otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, otherPair, cfg); err == nil {
		t.Fatal("a broker the CA file does not vouch for was accepted")
	}
}

func TestPinned(t *testing.T) {
	dir := t.TempDir()
	cert, key := testcert.Write(t, dir, "embedded", 0o600)
	pair, _ := KeyPair("c", cert, "k", key)
	cfg, err := Pinned("broker.embedded.tls_cert_file", cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, pair, cfg); err != nil {
		t.Fatalf("pinned handshake: %v", err)
	}
	other, otherKey := testcert.Write(t, dir, "other", 0o600)
	otherPair, _ := KeyPair("c", other, "k", otherKey)
	if err := handshake(t, otherPair, cfg); err == nil || !strings.Contains(err.Error(), "unexpected certificate") {
		t.Fatalf("another certificate: %v, want it refused", err)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	cert, key := testcert.Write(t, dir, "c", 0o600)
	_, openKey := testcert.Write(t, dir, "open", 0o644)
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o600)
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"missing CA", func() error { _, err := Client("broker.", Files{CAFile: filepath.Join(dir, "nope")}); return err }, "broker.ca_file: open"},
		{"CA not PEM", func() error { _, err := Client("broker.", Files{CAFile: notPEM}); return err }, "broker.ca_file: " + notPEM + " holds no PEM certificate"},
		{"cert without key", func() error { _, err := Client("broker.", Files{CertFile: cert}); return err }, "broker.cert_file and broker.key_file go together"},
		{"missing cert", func() error {
			_, err := Client("broker.", Files{CertFile: filepath.Join(dir, "nope"), KeyFile: key})
			return err
		}, "broker.cert_file: stat"},
		{"world-readable key", func() error { _, err := Client("broker.", Files{CertFile: cert, KeyFile: openKey}); return err }, "broker.key_file: " + openKey + " has mode 0644; a private key must be 0600 or 0640"},
		{"key not PEM", func() error { _, err := KeyPair("tls_cert_file", cert, "tls_key_file", notPEM); return err }, "tls_cert_file, tls_key_file: tls:"},
		{"pinned not PEM", func() error { _, err := Pinned("broker.embedded.tls_cert_file", notPEM); return err }, "broker.embedded.tls_cert_file: " + notPEM + " holds no PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
