package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"agoratokens/internal/testcert"
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
			testcert.Write(t, dir, "broker", 0o644)
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
				return strings.Replace(s, `  - match: "*"`, "  - match: \"*\"\n    tokens: {signal: {service: rtm, user: \"{device}\"}}\n  - match: \"dev-*\"", 1)
			})
		}, 1, []string{"policy.yaml", "rules[1].match (line 10)", `"dev-*" can never match`, "rules[0]"}},
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
