package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"agoratokens/clock"
)

// savedJSON is the content of a good state file for g, as after a reboot
// (no boot id: aged by the wall clock).
func savedJSON(t *testing.T, name string, issuedAt int64) []byte {
	t.Helper()
	b, err := json.Marshal(savedToken{V: stateVersion, Grant: mkGrant(t, name, "cam-42", "7", issuedAt, 100), ReceivedWall: issuedAt})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Each kind of bad state file is named in a warning, not served, and
// replaced by a token fetched afresh; the engine neither crashes nor
// refuses to start.
func TestEngineRecoversFromBadStateFiles(t *testing.T) {
	const t0 = 1_763_800_000
	tests := []struct {
		name  string
		write func(t *testing.T, path string)
		want  string // in the warning
	}{
		{"corrupt", func(t *testing.T, path string) { writeFile(t, path, []byte("{\"v\":1,\"grant\":{\"name\":7}}")) }, "decode"},
		{"truncated", func(t *testing.T, path string) {
			b := savedJSON(t, "video", t0)
			writeFile(t, path, b[:len(b)/2])
		}, "decode"},
		{"empty", func(t *testing.T, path string) { writeFile(t, path, nil) }, "empty"},
		{"oversized", func(t *testing.T, path string) {
			// A good token padded with spaces (which JSON allows) past
			// the limit: it must not be read at all.
			b := savedJSON(t, "video", t0)
			writeFile(t, path, append(b, bytes.Repeat([]byte(" "), maxStateFile)...))
		}, "limit of a state file"},
		{"wrong owner", func(t *testing.T, path string) {
			writeFile(t, path, savedJSON(t, "video", t0))
			if err := os.Chown(path, 4242, 4242); err != nil {
				t.Fatalf("chown the state file to another uid (the test needs root): %v", err)
			}
		}, "owned by uid 4242"},
		{"wrong version", func(t *testing.T, path string) {
			writeFile(t, path, bytes.Replace(savedJSON(t, "video", t0), []byte(`"v":1`), []byte(`"v":9`), 1))
		}, "version 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "token-video.json")
			tt.write(t, path)
			clk := clock.NewFake(time.Unix(t0+10, 0))
			h := startHarness(t, testConfig(dir, "video"), clk, nil)
			if _, ok := h.e.Current("video", clk.Now()); ok {
				t.Fatal("a bad state file was served")
			}
			if l := h.logLines("level=WARN", path, tt.want); len(l) != 1 {
				t.Fatalf("want one warning naming %s and %q; log:\n%s", path, tt.want, h.logs.String())
			}
			h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
			h.event(EventToken, "video")
			h.e.sync()
			if _, err := readSaved(path, "video", os.Geteuid()); err != nil {
				t.Fatalf("fresh token not persisted over the bad file: %v", err)
			}
			if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 {
				t.Fatalf("bad file not moved aside: %v", aside)
			}
		})
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A huge state file costs no memory: at most the limit is read.
func TestReadSavedBoundsMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token-video.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(32 << 20); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = readSaved(path, "video", os.Geteuid())
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("readSaved = %v, want an error about the size limit", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("reading a 32 MiB state file allocated %d bytes, want under 1 MiB", n)
	}
}

// A state directory that cannot be created (its path is a regular file)
// does not stop the agent: it fetches and serves from memory, says so
// once at Error level and in its status, and persists once the directory
// can be made.
func TestEngineServesFromMemoryWhenStateDirCannotBeCreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	writeFile(t, dir, []byte("not a directory"))
	h := startHarness(t, testConfig(dir, "video"), nil, nil)
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.e.sync()
	if _, ok := h.e.Current("video", h.clk.Now()); !ok {
		t.Fatal("token not served from memory")
	}
	st := h.e.Status(h.clk.Now())
	if !strings.Contains(st.StateError, "memory only") || !strings.Contains(st.StateError, dir) {
		t.Fatalf("status StateError = %q, want it to say memory only and name %s", st.StateError, dir)
	}
	// A renewal fails to persist too: still said once at Error level.
	h.advance(70 * time.Second)
	h.event(EventWillExpire, "video")
	h.tr.next(t).answer(mkGrant(t, "video", "cam-42", "7", h.wall(), 100))
	h.event(EventToken, "video")
	h.e.sync()
	if l := h.logLines("level=ERROR", "cannot persist tokens"); len(l) != 1 {
		t.Fatalf("%d Error lines about persisting, want 1:\n%s", len(l), h.logs.String())
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	h.advance(persistRetry)
	if _, err := readSaved(filepath.Join(dir, "token-video.json"), "video", os.Geteuid()); err != nil {
		t.Fatalf("token not persisted once the directory could be made: %v", err)
	}
	if st := h.e.Status(h.clk.Now()); st.StateError != "" {
		t.Fatalf("status StateError = %q after persisting again, want empty", st.StateError)
	}
	if l := h.logLines("level=INFO", "usable again"); len(l) != 1 {
		t.Fatalf("recovery not logged:\n%s", h.logs.String())
	}
}
