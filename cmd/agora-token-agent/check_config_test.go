package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "password"), "pw-0123456789\n", 0o600)
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "device_id: cam-1\nbroker: {url: tcp://127.0.0.1:1883, password_file: password}\ntokens: [video]\n", 0o644)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check-config", "--config", good}, &out, &errb); code != 0 {
		t.Fatalf("check-config good: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "OK") || !strings.Contains(out.String(), "cam-1") || strings.Contains(out.String(), "pw-0123456789") {
		t.Fatalf("summary = %q", out.String())
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "device_id: cam-1\nbroker: {url: tcp://127.0.0.1:1883}\nrenew_befor: 30s\n", 0o644)
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"check-config", "--config", bad}, &out, &errb); code != 1 {
		t.Fatalf("check-config bad: exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "renew_befor") {
		t.Fatalf("error %q does not name the key", errb.String())
	}
	if code := run(context.Background(), []string{"check-config", "--nope"}, &out, &errb); code != 2 {
		t.Fatalf("bad flag: exit %d, want 2", code)
	}
}
