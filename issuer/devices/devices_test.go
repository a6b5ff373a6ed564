package devices

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"agoratokens/clock"
)

func fixedClock() *clock.Fake { return clock.NewFake(time.Date(2025, 11, 22, 8, 0, 0, 0, time.UTC)) }

func TestAddCheckSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.yaml")
	f, err := Load(path)
	if err != nil {
		t.Fatalf("load missing file: %v", err)
	}
	if f.Len() != 0 {
		t.Fatalf("missing file has %d devices", f.Len())
	}
	f.Clock = fixedClock()
	s1, err := f.Add("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := f.Add("dev-2")
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) < 32 || s1 == s2 {
		t.Fatalf("secrets %q, %q: want distinct and at least 32 chars", s1, s2)
	}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), s1) || strings.Contains(string(raw), s2) {
		t.Fatalf("file holds a secret:\n%s", raw)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("save left %d files, want 1", len(entries))
	}

	g, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, secret string
		want               bool
	}{
		{"own secret", "dev-1", s1, true},
		{"second device", "dev-2", s2, true},
		{"other device's secret", "dev-1", s2, false},
		{"empty secret", "dev-1", "", false},
		{"unknown device", "dev-3", s1, false},
		{"prefix of secret", "dev-1", s1[:len(s1)-1], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := g.Check(tc.user, tc.secret); got != tc.want {
				t.Fatalf("Check(%q) = %v, want %v", tc.user, got, tc.want)
			}
		})
	}
	ds := g.Devices()
	if len(ds) != 2 || ds[0].Name != "dev-1" || !ds[0].Created.Equal(fixedClock().Wall()) {
		t.Fatalf("devices %+v", ds)
	}
}

func TestAddRefusesDuplicatesAndBadNames(t *testing.T) {
	f := New()
	if _, err := f.Add("cam-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Add("cam-1"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate add: %v, want ErrExists", err)
	}
	for _, bad := range []string{"", "a/b", "a+b", "#", strings.Repeat("x", 65), "dev 1"} {
		if _, err := f.Add(bad); err == nil {
			t.Errorf("Add(%q) accepted", bad)
		}
	}
	if err := f.AddSecret("cam-2", "short"); err == nil {
		t.Error("AddSecret accepted a short secret")
	}
}

func TestRotateAndRemove(t *testing.T) {
	f := New()
	old, _ := f.Add("a")
	bSecret, _ := f.Add("b")
	c, _ := f.Add("c")
	fresh, err := f.Rotate("a")
	if err != nil {
		t.Fatal(err)
	}
	if f.Check("a", old) || !f.Check("a", fresh) {
		t.Fatal("rotate did not replace the secret")
	}
	if _, err := f.Rotate("zzz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotate unknown: %v", err)
	}
	if err := f.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if f.Check("b", bSecret) || f.Has("b") {
		t.Fatal("removed device still checks")
	}
	if !f.Check("c", c) {
		t.Fatal("device after the removed one lost its entry")
	}
	if err := f.Remove("b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove twice: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ name, in, want string }{
		{"not yaml", "devices: [", "line 1: not valid YAML"},
		{"unknown key", "version: 1\nfoo: 2\n", "foo"},
		{"bad version", "version: 9\ndevices: []\n", "version"},
		{"bad name", "version: 1\ndevices:\n- name: a/b\n  hash: " + good + "\n", "devices[0].name"},
		{"duplicate", "version: 1\ndevices:\n- name: a\n  hash: " + good + "\n- name: a\n  hash: " + good + "\n", "listed twice"},
		{"no prefix", "version: 1\ndevices:\n- name: a\n  hash: " + strings.Repeat("ab", 32) + "\n", "devices[0].hash"},
		{"short hash", "version: 1\ndevices:\n- name: a\n  hash: sha256:abcd\n", "hex digits"},
		{"bcrypt", "version: 1\ndevices:\n- name: a\n  hash: $2y$10$abc\n", "sha256:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
	if f, err := Parse(strings.NewReader("")); err != nil || f.Len() != 0 {
		t.Fatalf("empty content: %v, %v", f, err)
	}
}

func TestLoadCorruptFileNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.yaml")
	if err := os.WriteFile(path, []byte("\x00\x01garbage: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err %v, want one naming %s", err, path)
	}
}

func BenchmarkCheck(b *testing.B) {
	f := New()
	var secret string
	for i := range 10000 {
		s, _ := f.Add("dev-" + strconv.Itoa(i))
		secret = s
	}
	name := f.Devices()[f.Len()-1].Name
	b.ReportAllocs()
	for b.Loop() {
		if !f.Check(name, secret) {
			b.Fatal("check failed")
		}
	}
}

// An operator (root) adding a device must not lock the issuer's service
// user out: saving keeps an existing file's group and group-read bit,
// but never widens a file beyond 0640.
func TestSaveKeepsModeAndGroup(t *testing.T) {
	for _, tc := range []struct {
		before, after os.FileMode
	}{
		{0o640, 0o640},
		{0o600, 0o600},
		{0o644, 0o640}, // world-readable is narrowed
		{0o400, 0o600}, // the owner can always write it back
	} {
		t.Run(tc.before.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "devices.yaml")
			f, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Add("dev-1"); err != nil {
				t.Fatal(err)
			}
			if err := f.Save(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.before); err != nil {
				t.Fatal(err)
			}
			gid := 65534 // nogroup; the test runs as root (make test does)
			if err := os.Chown(path, -1, gid); err != nil {
				t.Fatalf("chown (the test needs root, as make test runs): %v", err)
			}
			if _, err := f.Add("dev-2"); err != nil {
				t.Fatal(err)
			}
			if err := f.Save(path); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tc.after {
				t.Errorf("mode %v after save, want %v", st.Mode().Perm(), tc.after)
			}
			if g := st.Sys().(*syscall.Stat_t).Gid; g != uint32(gid) {
				t.Errorf("group %d after save, want %d", g, gid)
			}
		})
	}
}
