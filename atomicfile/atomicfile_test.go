package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// testGID is a group other than the test's own: the tests chown files to
// it, as an operator does with root:mosquitto. They run as root (as make
// test does); as another user the chown fails and says so.
const testGID = 4 // adm

func stat(t *testing.T, path string) (os.FileMode, uint32, uint32) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return st.Mode().Perm(), sys.Uid, sys.Gid
}

func TestWriteNewFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	if err := Write(path, []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one\n" {
		t.Fatalf("content %q", b)
	}
	if m, _, _ := stat(t, path); m != 0o644 {
		t.Fatalf("mode %v, want 0644", m)
	}
	if err := WritePrivate(filepath.Join(dir, "secret"), []byte("s")); err != nil {
		t.Fatal(err)
	}
	if m, _, _ := stat(t, filepath.Join(dir, "secret")); m != 0o600 {
		t.Fatalf("private mode %v, want 0600", m)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("%d files in the directory, want 2 (no temporary file left)", len(entries))
	}
}

// A replaced file keeps its mode, owner and group: the mosquitto
// password file case (root:mosquitto 0640 must not become root:root 0600).
func TestWriteKeepsModeOwnerGroup(t *testing.T) {
	for _, tc := range []struct {
		name          string
		write         func(path string, data []byte) error
		before, after os.FileMode
	}{
		{"Write 0640", func(p string, d []byte) error { return Write(p, d, 0o600) }, 0o640, 0o640},
		{"Write 0664", func(p string, d []byte) error { return Write(p, d, 0o600) }, 0o664, 0o664},
		{"WritePrivate 0640", WritePrivate, 0o640, 0o640},
		{"WritePrivate 0600", WritePrivate, 0o600, 0o600},
		{"WritePrivate narrows 0644", WritePrivate, 0o644, 0o640},
		{"WritePrivate narrows 0660", WritePrivate, 0o660, 0o640},
		{"WritePrivate owner can write back 0400", WritePrivate, 0o400, 0o600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "passwd")
			if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(path, 0, testGID); err != nil {
				t.Fatalf("chown (the test runs as root): %v", err)
			}
			if err := os.Chmod(path, tc.before); err != nil {
				t.Fatal(err)
			}
			if err := tc.write(path, []byte("new\n")); err != nil {
				t.Fatal(err)
			}
			m, uid, gid := stat(t, path)
			if m != tc.after || uid != 0 || gid != testGID {
				t.Fatalf("after the rewrite: %v %d:%d, want %v 0:%d", m, uid, gid, tc.after, testGID)
			}
			if b, _ := os.ReadFile(path); string(b) != "new\n" {
				t.Fatalf("content %q", b)
			}
		})
	}
}

func TestWriteFailsLeavingOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	err := Write(path, []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v, want one naming %s as not a regular file", err, path)
	}
	err = Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("write into a missing directory: %v", err)
	}
}
