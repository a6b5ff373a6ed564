package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// initSetup writes a setup with init and returns its directory.
func initSetup(t *testing.T) string {
	t.Helper()
	t.Setenv("AGORA_APP_ID", "")
	t.Setenv("AGORA_APP_CERTIFICATE", "")
	dir := filepath.Join(t.TempDir(), "setup")
	if code, _, errOut := runCmd(t, context.Background(), "init", dir); code != 0 {
		t.Fatal(errOut)
	}
	return dir
}

// edit rewrites a file of the setup.
func edit(t *testing.T, path string, change func(string) string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(change(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeTLSPair writes a self-signed certificate and its key (keyMode).
func writeTLSPair(t *testing.T, dir string, keyMode os.FileMode) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(dir, "broker.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "broker.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	if err := os.Chmod(filepath.Join(dir, "broker.key"), keyMode); err != nil {
		t.Fatal(err)
	}
}

const withTLS = "    credentials_file: devices.yaml\n    tls_cert_file: broker.crt\n    tls_key_file: broker.key\n"

// check-config loads what serve loads: where serve would fail, it fails,
// naming the file and the key (and the line where the key is written).
func TestCheckConfigLoadsWhatServeLoads(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		code  int
		want  []string // in stderr
	}{
		{"tls_cert_file missing", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, "issuer.yaml"), func(s string) string {
				return strings.Replace(s, "    credentials_file: devices.yaml\n", withTLS, 1)
			})
		}, 1, []string{"broker.embedded.tls_cert_file", "broker.crt", "no such file"}},
		{"tls_key_file world-readable", func(t *testing.T, dir string) {
			writeTLSPair(t, dir, 0o644)
			edit(t, filepath.Join(dir, "issuer.yaml"), func(s string) string {
				return strings.Replace(s, "    credentials_file: devices.yaml\n", withTLS, 1)
			})
		}, 1, []string{"broker.embedded.tls_key_file (line 12)", "broker.key has mode 0644", "private key"}},
		{"corrupt devices file", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "devices.yaml"), []byte("version: 1\ndevices:\n  - name: cam-1\n    hash: sha265:"+strings.Repeat("ab", 32)+"\n"), 0o600)
		}, 1, []string{"broker.embedded.credentials_file (line 10)", "devices.yaml", "devices[0].hash (line 4)", `must start with "sha256:"`}},
		{"devices file missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "devices.yaml"))
		}, 0, []string{"warning", "broker.embedded.credentials_file (line 10)", "devices.yaml does not exist"}},
		{"policy world-writable", func(t *testing.T, dir string) {
			os.Chmod(filepath.Join(dir, "policy.yaml"), 0o666)
		}, 1, []string{"policy_file", "policy.yaml has mode 0666"}},
		{"rule after a catch-all", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, "policy.yaml"), func(s string) string {
				return strings.Replace(s, `  - match: "dev-*"`, "  - match: \"*\"\n    tokens: {signal: {service: rtm, user: \"{device}\"}}\n  - match: \"dev-*\"", 1)
			})
		}, 1, []string{"policy.yaml", "rules[1].match (line 7)", `"dev-*" can never match`, "rules[0]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := initSetup(t)
			tc.setup(t, dir)
			code, out, errOut := runCmd(t, context.Background(), "check-config", "--config", filepath.Join(dir, "issuer.yaml"))
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if (code == 0) != strings.Contains(out, "config OK") {
				t.Errorf("exit %d but stdout:\n%s", code, out)
			}
		})
	}
}
