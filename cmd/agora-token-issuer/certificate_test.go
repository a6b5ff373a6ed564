package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"agoratokens/internal/testbroker"
	"agoratokens/issuer"
)

const fleetCert3 = "abcdefabcdefabcdefabcdefabcdef01"

func TestCertificateAddListRemove(t *testing.T) {
	t.Setenv("AGORA_APP_CERTIFICATE", "")
	cfg := writeFleetSetup(t, fmt.Sprintf("broker: {url: \"tcp://127.0.0.1:%d\", username: %s, password_file: broker.password}",
		testbroker.FreePort(t), fleetIssuer))
	dir := filepath.Dir(cfg)
	ctx := context.Background()
	secrets := []string{fleetCert, fleetCert2, fleetCert3}
	noSecret := func(t *testing.T, s string) {
		t.Helper()
		for _, c := range secrets {
			if strings.Contains(s, c) {
				t.Fatalf("output shows a certificate:\n%s", s)
			}
		}
	}

	// Refusals of add.
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("not-hex-not-hex-not-hex-not-hex!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dup := filepath.Join(t.TempDir(), "dup")
	if err := os.WriteFile(dup, []byte(fleetCert+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no source", []string{"add", "next", "--config", cfg}, 1, "AGORA_APP_CERTIFICATE"},
		{"not hex", []string{"add", "next", "--config", cfg, "--file", bad}, 1, "not 32 hex characters"},
		{"same certificate", []string{"add", "next", "--config", cfg, "--file", dup}, 1, `already listed as "primary"`},
		{"same id", []string{"add", "primary", "--config", cfg, "--file", bad}, 1, "not 32 hex"},
		{"bad id", []string{"add", "a/b", "--config", cfg}, 2, "certificate id"},
		{"no id", []string{"add", "--config", cfg}, 2, "ID is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, ctx, append([]string{"certificate"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("%d, want %d with %q:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
			noSecret(t, out+errOut)
		})
	}

	// add from the environment, then from a file.
	t.Setenv("AGORA_APP_CERTIFICATE", fleetCert2)
	code, out, errOut := runCmd(t, ctx, "certificate", "add", "next", "--config", cfg)
	if code != 0 || !strings.Contains(out, "not active") {
		t.Fatalf("add: %d\n%s%s", code, out, errOut)
	}
	noSecret(t, out+errOut)
	t.Setenv("AGORA_APP_CERTIFICATE", "")
	src := filepath.Join(t.TempDir(), "third")
	if err := os.WriteFile(src, []byte(fleetCert3+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCmd(t, ctx, "certificate", "add", "third", "--config", cfg, "--file", src); code != 0 {
		t.Fatalf("add --file: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, ctx, "certificate", "add", "next", "--config", cfg, "--file", src); code != 1 || !strings.Contains(errOut, "already listed") {
		t.Fatalf("add of a listed id: %d %s", code, errOut)
	}
	for _, id := range []string{"next", "third"} {
		st, err := os.Stat(filepath.Join(dir, id+".cert"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s.cert: %v %v, want mode 0600", id, st, err)
		}
	}
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"# The issuer of the fleet tests.", "# Certificates: the rotation adds more.", "# the first", "# signs"} {
		if !strings.Contains(string(text), c) {
			t.Errorf("the comment %q was lost:\n%s", c, text)
		}
	}
	loaded, err := issuer.LoadConfig(cfg)
	if err != nil {
		t.Fatalf("the edited config does not load: %v\n%s", err, text)
	}
	if len(loaded.Certificates) != 3 || loaded.ActiveCertificate != "primary" {
		t.Fatalf("certificates %+v active %s", loaded.Certificates, loaded.ActiveCertificate)
	}

	// list
	code, out, errOut = runCmd(t, ctx, "certificate", "list", "--config", cfg)
	if code != 0 {
		t.Fatalf("list: %d %s", code, errOut)
	}
	noSecret(t, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "primary") || !strings.Contains(lines[1], "yes") ||
		!strings.Contains(lines[1], fingerprint(fleetCert)) || !strings.HasPrefix(lines[2], "next") ||
		strings.Contains(lines[2], "yes") || len(fingerprint(fleetCert)) != 8 {
		t.Fatalf("list:\n%s", out)
	}

	// remove: the active one, one whose tokens may be live, then --force
	// and one whose tokens have expired.
	if code, _, errOut := runCmd(t, ctx, "certificate", "remove", "primary", "--config", cfg); code != 1 || !strings.Contains(errOut, "active") {
		t.Fatalf("remove active: %d %s", code, errOut)
	}
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	ledger, _ := json.Marshal(map[string]any{"v": 1, "latest_expiry": map[string]int64{
		"next": time.Now().Add(time.Hour).Unix(), "third": time.Now().Add(-time.Minute).Unix()}})
	if err := os.WriteFile(filepath.Join(state, issuer.LedgerFile), ledger, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCmd(t, ctx, "certificate", "remove", "next", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "may be live until") || !strings.Contains(errOut, "cannot reach the broker") {
		t.Fatalf("remove live: %d %s", code, errOut)
	}
	if code, _, errOut := runCmd(t, ctx, "certificate", "remove", "third", "--config", cfg); code != 0 {
		t.Fatalf("remove expired: %d %s", code, errOut)
	}
	if code, _, errOut := runCmd(t, ctx, "certificate", "remove", "next", "--config", cfg, "--force"); code != 0 {
		t.Fatalf("remove --force: %d %s", code, errOut)
	}
	loaded, err = issuer.LoadConfig(cfg)
	if err != nil || len(loaded.Certificates) != 1 || loaded.Certificates[0].ID != "primary" {
		t.Fatalf("after remove: %+v %v", loaded, err)
	}
	text, _ = os.ReadFile(cfg)
	if !strings.Contains(string(text), "# the first") {
		t.Fatalf("remove lost a comment:\n%s", text)
	}
}

// TestConfigDocEdits: the edits change the lines they must and keep the
// rest of the file byte for byte.
func TestConfigDocEdits(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"block of flow entries",
			"# head\ncertificates:\n  - {id: primary, file: p.cert}  # first\n  # - {id: old, file: o.cert}\nactive_certificate: primary   # signs\n\nlog_level: info\n",
			"# head\ncertificates:\n  - {id: primary, file: p.cert}  # first\n  - {id: next, file: next.cert}\n  # - {id: old, file: o.cert}\nactive_certificate: next   # signs\n\nlog_level: info\n"},
		{"block of block entries",
			"certificates:\n- id: primary\n  file: p.cert\nactive_certificate: \"primary\"\n",
			"certificates:\n- id: primary\n  file: p.cert\n- id: next\n  file: next.cert\nactive_certificate: next\n"},
		{"flow list",
			"certificates: [{id: primary, file: p.cert}] # c\nactive_certificate: primary\n",
			"certificates: [{id: primary, file: p.cert}, {id: next, file: next.cert}] # c\nactive_certificate: next\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "issuer.yaml")
			if err := os.WriteFile(path, []byte(tc.in), 0o640); err != nil {
				t.Fatal(err)
			}
			d, err := readConfigDoc(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.addCertificate("next", "next.cert"); err != nil {
				t.Fatal(err)
			}
			if err := d.setScalar("active_certificate", "next"); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(d.lines, "\n"); got != tc.want {
				t.Fatalf("after add:\n%s\nwant:\n%s", got, tc.want)
			}
			if err := d.removeCertificate("next"); err != nil {
				t.Fatal(err)
			}
			if err := d.setScalar("active_certificate", "primary"); err != nil {
				t.Fatal(err)
			}
			want := strings.Replace(tc.in, `"primary"`, "primary", 1)
			if got := strings.Join(d.lines, "\n"); got != want {
				t.Fatalf("after remove:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestCertificateAddKeepsOwner: run as root (an operator's sudo), add
// leaves the new certificate and the edited config owned like the
// files already there, so the issuer's user can still read them. As
// another user the files stay that user's.
func TestCertificateAddKeepsOwner(t *testing.T) {
	cfg := writeFleetSetup(t, `broker: {url: "tcp://127.0.0.1:1"}`)
	dir := filepath.Dir(cfg)
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		uid, gid = 65534, 65534 // nobody: stands for the issuer's user
		for _, f := range []string{cfg, filepath.Join(dir, "primary.cert")} {
			if err := os.Chown(f, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Setenv("AGORA_APP_CERTIFICATE", fleetCert2)
	if code, _, errOut := runCmd(t, context.Background(), "certificate", "add", "next", "--config", cfg); code != 0 {
		t.Fatalf("add: %s", errOut)
	}
	for _, f := range []string{cfg, filepath.Join(dir, "next.cert")} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if int(sys.Uid) != uid || int(sys.Gid) != gid {
			t.Errorf("%s is owned by %d:%d, want %d:%d", f, sys.Uid, sys.Gid, uid, gid)
		}
	}
}
