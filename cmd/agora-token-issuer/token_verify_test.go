package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenVerify(t *testing.T) {
	clearEnv(t)
	good := writeCert(t, "good", "  "+testCert+"\n\n", 0o600)
	other := writeCert(t, "other", otherCert, 0o600)
	tok := craftToken(t, testCert, 1700000000, 3, fpaService(), 1)

	r := tokenCmd(t, "", "verify", "--certificate-file", other, "--certificate-file", good, tok)
	if mustOK(t, r) != "signed by "+good+"\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	r = tokenCmd(t, tok, "verify", "-", "--certificate-file", other)
	if r.code != 1 || !strings.Contains(r.stderr, "matches none") || !strings.Contains(r.stderr, other) {
		t.Errorf("wrong certificate: exit %d, %q", r.code, r.stderr)
	}

	t.Run("unknown service type still verifies", func(t *testing.T) {
		u := craftToken(t, testCert, 1, 1, append(fpaService(), unknownService()...), 2)
		r := tokenCmd(t, "", "verify", "--certificate-file", good, u)
		if mustOK(t, r) != "signed by "+good+"\n" || !strings.Contains(r.stderr, "unknown service type 11") {
			t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
		}
		r = tokenCmd(t, "", "verify", "--certificate-file", other, u)
		if r.code != 1 || !strings.Contains(r.stderr, "matches none") {
			t.Errorf("wrong certificate: exit %d, %q", r.code, r.stderr)
		}
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv(envCertificate, testCert)
		r := tokenCmd(t, "", "verify", tok)
		if mustOK(t, r) != "signed by $AGORA_APP_CERTIFICATE\n" {
			t.Errorf("stdout %q", r.stdout)
		}
		// Files given on the command line replace the environment.
		if r := tokenCmd(t, "", "verify", "--certificate-file", other, tok); r.code != 1 {
			t.Errorf("env used beside --certificate-file: exit %d", r.code)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no certificate", []string{tok}, 2, "no certificate"},
		{"no token", []string{"--certificate-file", good}, 2, "want one TOKEN"},
		{"bad token", []string{"--certificate-file", good, "007AAAA"}, 1, "zlib"},
		{"missing file", []string{"--certificate-file", "/nonexistent/cert", tok}, 1, "/nonexistent/cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tokenCmd(t, "", append([]string{"verify"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", r.code, tc.code, r.stderr, tc.want)
			}
		})
	}
}

func TestCertificateFiles(t *testing.T) {
	clearEnv(t)
	tok := craftToken(t, testCert, 1700000000, 3, fpaService(), 1)
	for _, tc := range []struct {
		name, content string
		perm          os.FileMode
		ok            bool
		want          string // in stderr
	}{
		{"plain", testCert, 0o600, true, ""},
		{"whitespace and newline", "\n\t " + testCert + " \r\n", 0o640, true, ""},
		{"world readable warns", testCert + "\n", 0o644, true, "warning: certificate file"},
		{"too short", testCert[:31], 0o600, false, "got 31 characters"},
		{"too long", testCert + "0", 0o600, false, "got 33 characters"},
		{"not hex", testCert[:31] + "g", 0o600, false, "character 32 is not hex"},
		{"two lines", testCert + "\n" + testCert, 0o600, false, "32 hex characters"},
		{"empty", "", 0o600, false, "got 0 characters"},
		{"huge", strings.Repeat("a", 5000), 0o600, false, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeCert(t, "cert", tc.content, tc.perm)
			r := tokenCmd(t, "", "verify", "--certificate-file", f, tok)
			if (r.code == 0) != tc.ok || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q (want %q)", r.code, r.stderr, tc.want)
			}
			if !tc.ok && !strings.Contains(r.stderr, f) {
				t.Errorf("error does not name the file: %q", r.stderr)
			}
			if tc.perm&0o077 == 0 && strings.Contains(r.stderr, "warning") {
				t.Errorf("warning for mode %o: %q", tc.perm, r.stderr)
			}
		})
	}
	if r := tokenCmd(t, "", "verify", "--certificate-file", t.TempDir(), tok); r.code != 1 || !strings.Contains(r.stderr, "directory") {
		t.Errorf("directory: exit %d, %q", r.code, r.stderr)
	}
}

func TestTokenVerifyIssuerConfig(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	for name, content := range map[string]string{
		"old.cert":    otherCert + "\n",
		"new.cert":    testCert + "\n",
		"policy.yaml": "",
		"issuer.yaml": "app_id: " + testAppID + "\n" +
			"certificates:\n  - {id: old, file: old.cert}\n  - {id: new, file: new.cert}\n" +
			"active_certificate: new\nbroker:\n  url: tcp://127.0.0.1:1883\npolicy_file: policy.yaml\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(dir, "issuer.yaml")
	tok := craftToken(t, testCert, 1700000000, 3, fpaService(), 1)
	r := tokenCmd(t, "", "verify", "--config", config, tok)
	if mustOK(t, r) != "signed by kid new\n" || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
	stranger := craftToken(t, strings.Repeat("e", 32), 1700000000, 3, fpaService(), 1)
	r = tokenCmd(t, "", "verify", "--config", config, stranger)
	if r.code != 1 || !strings.Contains(r.stderr, "kid old, kid new") {
		t.Errorf("unknown signer: exit %d, %q", r.code, r.stderr)
	}
	if r := tokenCmd(t, "", "verify", "--config", filepath.Join(dir, "missing.yaml"), tok); r.code != 1 || !strings.Contains(r.stderr, "missing.yaml") {
		t.Errorf("missing config: exit %d, %q", r.code, r.stderr)
	}
	for _, s := range []string{r.stdout, r.stderr} {
		if strings.Contains(strings.ToLower(s), strings.ToLower(testCert)) {
			t.Errorf("certificate printed: %q", s)
		}
	}
}
