package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a small tmpfs on a fresh directory for the test: the
// one way to get a full or read-only file system that works for root
// (chmod does not stop root; chattr +i needs ext4). The tests run as root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("cannot mount a tmpfs on %s (the test needs root or CAP_SYS_ADMIN): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func remount(t *testing.T, dir string, flags uintptr) {
	t.Helper()
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|flags, ""); err != nil {
		t.Fatalf("remount %s: %v", dir, err)
	}
}

// fill writes to a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			return path
		}
	}
}

// A full state directory: tokens are served from memory, it says so
// once, and they are persisted when space returns.
func TestEngineStateDirFull(t *testing.T) {
	dir := mountTmpfs(t, "64k")
	filler := fill(t, dir)
	h := startHarness(t, testConfig(dir, "video"), nil, nil)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.e.sync()
	if _, ok := h.e.Current("video", h.clk.Now()); !ok {
		t.Fatal("token not served from memory")
	}
	if st := h.e.Status(h.clk.Now()); !strings.Contains(st.StateError, "no space left") {
		t.Fatalf("status StateError = %q, want it to say the disk is full", st.StateError)
	}
	if l := h.logLines("level=ERROR", "cannot persist tokens", "no space left"); len(l) != 1 {
		t.Fatalf("want one Error line about the full disk:\n%s", h.logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "token-video.json.tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind on a full disk: %v", err)
	}
	h.advance(persistRetry / 2)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	h.advance(persistRetry / 2)
	if _, err := readSaved(filepath.Join(dir, "token-video.json"), "video", os.Geteuid()); err != nil {
		t.Fatalf("token not persisted once space returned: %v", err)
	}
	if st := h.e.Status(h.clk.Now()); st.StateError != "" {
		t.Fatalf("status StateError = %q after persisting again, want empty", st.StateError)
	}
}

// A read-only state directory holding a corrupt file: the agent starts
// (the file cannot be moved aside: it is named and ignored), serves from
// memory, and persists once the directory is writable again.
func TestEngineStateDirReadOnlyWithCorruptFile(t *testing.T) {
	dir := mountTmpfs(t, "64k")
	path := filepath.Join(dir, "token-video.json")
	writeFile(t, path, []byte("{garbage"))
	remount(t, dir, syscall.MS_RDONLY)
	h := startHarness(t, testConfig(dir, "video"), nil, nil)
	if l := h.logLines("level=WARN", path, "cannot move it aside"); len(l) != 1 {
		t.Fatalf("want one warning naming the corrupt file:\n%s", h.logs.String())
	}
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.e.sync()
	if _, ok := h.e.Current("video", h.clk.Now()); !ok {
		t.Fatal("token not served from memory")
	}
	if st := h.e.Status(h.clk.Now()); !strings.Contains(st.StateError, "read-only") {
		t.Fatalf("status StateError = %q, want it to say read-only", st.StateError)
	}
	remount(t, dir, 0)
	h.advance(persistRetry - time.Millisecond)
	if _, err := readSaved(path, "video", os.Geteuid()); err == nil {
		t.Fatal("persisted before the retry was due")
	}
	h.advance(time.Millisecond)
	if _, err := readSaved(path, "video", os.Geteuid()); err != nil {
		t.Fatalf("token not persisted once the directory was writable: %v", err)
	}
}
