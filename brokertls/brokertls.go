// Package brokertls builds the TLS configuration of an MQTT broker
// connection from PEM files, one way for the agent, the issuer and the
// fleet simulator: TLS 1.2 at least, the CA file (or the system's roots)
// to verify the broker, an optional client certificate whose private key
// file must be as private as a secret file (0600 or 0640). Errors name
// the config key of the file at fault and never show a key's content.
package brokertls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"agoratokens/secretfile"
)

// Files are the PEM files of a client's TLS.
type Files struct {
	// CAFile verifies the broker's certificate; empty: the system's roots.
	CAFile string
	// CertFile and KeyFile, both or neither, are the client certificate.
	CertFile, KeyFile string
}

// Client returns the TLS configuration for reaching a broker. Errors name
// the files by their config keys under prefix: with prefix "broker.",
// broker.ca_file, broker.cert_file and broker.key_file.
func Client(prefix string, f Files) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CAFile != "" {
		pemBytes, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%sca_file: %w", prefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%sca_file: %s holds no PEM certificate", prefix, f.CAFile)
		}
		t.RootCAs = pool
	}
	if f.CertFile != "" || f.KeyFile != "" {
		pair, err := KeyPair(prefix+"cert_file", f.CertFile, prefix+"key_file", f.KeyFile)
		if err != nil {
			return nil, err
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}

// KeyPair loads a certificate and its private key (a client's, or what a
// TLS listener presents), refusing a key file others may read. certKey
// and keyKey are the files' config keys, for errors.
func KeyPair(certKey, certFile, keyKey, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, fmt.Errorf("%s and %s go together", certKey, keyKey)
	}
	if _, err := os.Stat(certFile); err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", certKey, err)
	}
	if err := secretfile.CheckMode(keyFile, "a private key"); err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", keyKey, err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s, %s: %w", certKey, keyKey, err)
	}
	return pair, nil
}

// Pinned trusts exactly the certificate in certFile and no other, whatever
// names it holds: for the issuer reaching its own embedded broker over
// loopback. key names certFile in errors.
func Pinned(key, certFile string) (*tls.Config, error) {
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", key, certFile)
	}
	want := blk.Bytes
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], want) {
				return errors.New("the broker presented an unexpected certificate")
			}
			return nil
		},
	}, nil
}
