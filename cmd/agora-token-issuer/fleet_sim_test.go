package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"agoratokens/internal/testbroker"
	"agoratokens/issuer/devices"
)

func runSim(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var o, e bytes.Buffer
	code := runFleetSim(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestFleetSimUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no seed", []string{"--broker", "tcp://127.0.0.1:1"}, 2, "--seed-file"},
		{"nothing to do", []string{"--seed-file", "s"}, 2, "--broker, --register"},
		{"no devices", []string{"--seed-file", "s", "--broker", "tcp://x:1", "--devices", "0"}, 2, "--devices"},
		{"stray argument", []string{"extra"}, 2, "unexpected"},
		{"on connect with a rate", []string{"--seed-file", "s", "--broker", "tcp://x:1", "--on-connect", "--rate", "5"}, 2, "--on-connect and --rate"},
		{"negative retries", []string{"--seed-file", "s", "--broker", "tcp://x:1", "--retries", "-1"}, 2, "--retries -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, e := runSim(t, tc.args...)
			if code != tc.code || !strings.Contains(e, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, e, tc.code, tc.want)
			}
		})
	}
}

func TestFleetSimRegistersThenRuns(t *testing.T) {
	dir := t.TempDir()
	seed, creds := filepath.Join(dir, "seed"), filepath.Join(dir, "devices.yaml")
	code, out, e := runSim(t, "--seed-file", seed, "--register", creds, "--devices", "5")
	if code != 0 || !strings.Contains(out, "registered 5 devices") {
		t.Fatalf("register: exit %d %s %s", code, out, e)
	}
	if f, err := devices.Load(creds); err != nil || f.Len() != 5 {
		t.Fatalf("credentials: %v", err)
	}
	if code, _, e := runSim(t, "--seed-file", seed, "--register", creds, "--format", "bcrypt"); code != 1 || !strings.Contains(e, "bcrypt") {
		t.Fatalf("bad format: exit %d %s", code, e)
	}

	// With no issuer on the broker the devices connect and every request
	// is lost: the simulator says so and fails.
	m := testbroker.StartMochi(t, testbroker.MochiOptions{})
	code, out, e = runSim(t, "--seed-file", seed, "--register", m.CredentialsFile, "--devices", "5",
		"--broker", m.URL, "--timeout", "300ms")
	if code != 1 || !strings.Contains(out, "connected 5") || !strings.Contains(out, "lost 5") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, e)
	}
}
