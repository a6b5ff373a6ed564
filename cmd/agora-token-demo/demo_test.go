package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"agoratokens/issuer"
)

// TestMakeDemo runs the shortened demo exactly as the README says:
// `make demo DEMO_DURATION=45s DEMO_TTL=40s`. The demo exits 0 only when
// every token every agent handed out reached its media client, through a
// broker restart and a certificate rotation. The binaries (BIN) and the
// demo's setup (DEMO_DIR) go to temporary directories: a test leaves the
// checkout as it found it.
func TestMakeDemo(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed to run the demo as the README does: apt-get install make")
	}
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "demo")
	bin := filepath.Join(tmp, "bin")
	cmd := exec.Command("make", "-C", filepath.Join("..", ".."), "demo",
		"DEMO_DURATION=45s", "DEMO_TTL=40s", "DEMO_DEVICES=2", "DEMO_DIR="+dir, "BIN="+bin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("make demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"RANDOM DEMO app id",
		"stopping the broker",
		"starting the broker again",
		`kid "secondary" is now active`,
		"kid=secondary",
		"called renewToken with the new video token",
		"every token reached its media client",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
	// The generated setup is a working starting point: the issuer's
	// config, as rotated, still loads.
	if _, err := issuer.LoadConfig(filepath.Join(dir, "issuer", "issuer.yaml")); err != nil {
		t.Fatalf("generated issuer config: %v", err)
	}
	// make built into BIN, so nothing went to the checkout's bin/.
	for _, name := range []string{"agora-token-issuer", "agora-token-agent", "agora-media-sample", "agora-token-demo"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			t.Errorf("make demo BIN=%s did not build %s there: %v", bin, name, err)
		}
	}
}

func TestAddCertificate(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "issuer.yaml")
	in := "# comment kept\napp_id: x\ncertificates:\n  - {id: primary, file: app.cert}\nactive_certificate: primary\n"
	if err := os.WriteFile(cfg, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := addCertificate(cfg, "secondary", "second.cert"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"# comment kept", "id: primary", "id: secondary", "file: second.cert", "active_certificate: secondary"} {
		if !strings.Contains(got, want) {
			t.Errorf("rotated config lacks %q:\n%s", want, got)
		}
	}
	if err := os.WriteFile(cfg, []byte("app_id: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := addCertificate(cfg, "secondary", "second.cert"); err == nil || !strings.Contains(err.Error(), "no certificates list") {
		t.Fatalf("config without certificates: %v", err)
	}
}
