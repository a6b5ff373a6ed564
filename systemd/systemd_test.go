// Package systemd_test checks the unit files, drop-ins and sysusers/
// tmpfiles snippets that ship in the packages, with systemd's own tools.
package systemd_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install Debian's systemd package (make test-deps)", name)
	}
	return p
}

// fakeBinaries puts executables where the staged units' ExecStart
// points. verify checks that each command exists and is executable; the
// package tests check that the packages install the real ones at
// /usr/bin. (Building the commands here would tie this test to every
// package of the module.)
func fakeBinaries(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, cmd := range []string{"agora-token-agent", "agora-token-issuer"} {
		if err := os.Symlink(self, filepath.Join(bin, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// stage copies the units (and the LED drop-in) into a temp dir with
// /usr/bin/ replaced by bin, as installed units would find the binaries.
func stage(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	copyFile := func(src, dst string) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte("/usr/bin/"), []byte(bin+"/"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"agora-token-agent.service", "agora-token-issuer.service", "agora-token-agent.service.d/led.conf"} {
		copyFile(u, filepath.Join(dir, u))
	}
	return dir
}

func TestUnitsVerify(t *testing.T) {
	analyze := lookTool(t, "systemd-analyze")
	dir := stage(t, fakeBinaries(t))
	units := []string{filepath.Join(dir, "agora-token-agent.service"), filepath.Join(dir, "agora-token-issuer.service")}
	cmd := exec.Command(analyze, append([]string{"verify"}, units...)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}

	// The hardening must stay: systemd's own score, 0 (locked) to 10.
	exposure := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for _, u := range units {
		out, _ := exec.Command(analyze, "security", "--offline=yes", "--no-pager", u).CombinedOutput()
		m := exposure.FindSubmatch(out)
		if m == nil {
			t.Fatalf("systemd-analyze security %s: no exposure level in:\n%s", filepath.Base(u), out)
		}
		if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.5 {
			t.Errorf("%s: exposure level %.1f, want ≤ 2.5 (hardening was loosened?)\n%s", filepath.Base(u), level, out)
		}
	}
}

// A drop-in with a mistake must make the test above fail: check that
// verify reads the drop-in directory at all.
func TestVerifyReadsDropIns(t *testing.T) {
	analyze := lookTool(t, "systemd-analyze")
	dir := stage(t, fakeBinaries(t))
	f, err := os.OpenFile(filepath.Join(dir, "agora-token-agent.service.d", "led.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("NoSuchSetting=1\n")
	f.Close()
	out, _ := exec.Command(analyze, "verify", filepath.Join(dir, "agora-token-agent.service")).CombinedOutput()
	if !strings.Contains(string(out), "NoSuchSetting") {
		t.Fatalf("systemd-analyze verify ignored the drop-in: %s", out)
	}
}

// unitKeys returns each key's values in a unit file, in order.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		keys[k] = append(keys[k], v)
	}
	return keys
}

// What the agent's code and the docs rely on.
func TestAgentUnitContract(t *testing.T) {
	keys := unitKeys(t, "agora-token-agent.service")
	want := map[string]string{
		"Type":                    "notify",
		"ExecStart":               "/usr/bin/agora-token-agent run --config /etc/agora-token-agent/agent.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"User":                    "agora-token-agent",
		"RuntimeDirectory":        "agora-token-agent",
		"StateDirectory":          "agora-token-agent",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ConditionPathExists":     "/etc/agora-token-agent/agent.yaml",
		"SystemCallFilter":        "@system-service",
		"WatchdogSec":             "60s",
	}
	for k, v := range want {
		if got := keys[k]; len(got) == 0 || got[0] != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	if got := keys["SupplementaryGroups"]; got != nil {
		t.Errorf("SupplementaryGroups=%q in the unit: the gpio group belongs in the LED drop-in only", got)
	}
	if got := unitKeys(t, "agora-token-agent.service.d/led.conf")["SupplementaryGroups"]; len(got) != 1 || got[0] != "gpio" {
		t.Errorf("led.conf SupplementaryGroups=%q, want gpio", got)
	}
}
