package broker

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"agoratokens/clock"
	"agoratokens/issuer/devices"
	"agoratokens/wire"
)

func TestRacy(t *testing.T) {
	mtime := time.Unix(1000, 500)
	s := fileStamp{exists: true, modTime: mtime.UnixNano()}
	for _, tc := range []struct {
		name   string
		stamp  fileStamp
		readAt time.Time
		want   bool
	}{
		{"read in the same tick", s, mtime, true},
		{"read just after", s, mtime.Add(10 * time.Millisecond), true},
		{"read before the mtime (clock step)", s, mtime.Add(-time.Second), true},
		{"read at the window's end", s, mtime.Add(racyWindow), false},
		{"read long after", s, mtime.Add(time.Hour), false},
		{"no file", fileStamp{}, mtime, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := racy(tc.stamp, tc.readAt); got != tc.want {
				t.Fatalf("racy = %v, want %v", got, tc.want)
			}
		})
	}
}

// newTestHook starts an auth hook on a credentials file with dev-1.
func newTestHook(t *testing.T) (*authHook, string, *devices.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "devices.yaml")
	f := devices.New()
	if _, err := f.Add("dev-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	h, err := newAuthHook(authConfig{
		topics: wire.NewTopics(""), credentialsFile: path, serviceUser: "issuer",
		log: slog.New(slog.DiscardHandler), clock: clock.Real(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, path, f
}

// A rotation keeps the file's size; written in the same clock tick it
// also keeps the mtime. The next failed login must still see it.
func TestReloadSeesRotationWithSameStamp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		racy     bool
		wantSeen bool
	}{
		{"fresh stamp: content compared", true, true},
		{"old stamp: trusted, no read", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, path, f := newTestHook(t)
			fresh, err := f.Rotate("dev-1")
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Save(path); err != nil {
				t.Fatal(err)
			}
			// The timestamps collided: the new file's stamp is the one
			// the hook has.
			s, err := stampOf(path)
			if err != nil {
				t.Fatal(err)
			}
			h.loaded.stamp, h.loaded.racy = s, tc.racy
			h.reloadIfChanged()
			if got := h.creds.Load().Check("dev-1", fresh); got != tc.wantSeen {
				t.Fatalf("rotated secret accepted = %v, want %v", got, tc.wantSeen)
			}
		})
	}
}

// An in-place rewrite of the same size that restores the old mtime
// (cp -p, an editor keeping times) is still a new version.
func TestReloadSeesInPlaceRewrite(t *testing.T) {
	h, path, f := newTestHook(t)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := f.Rotate("dev-1")
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteTo(out); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	h.loaded.racy = false // only the stamp may tell
	h.reloadIfChanged()
	if !h.creds.Load().Check("dev-1", fresh) {
		t.Fatal("rewritten secret not picked up")
	}
}

// A failed login with an unchanged, settled file reads nothing more.
func TestReloadUnchangedKeepsCredentials(t *testing.T) {
	h, _, _ := newTestHook(t)
	before := h.creds.Load()
	h.loaded.racy = true
	h.reloadIfChanged()
	if h.creds.Load() != before {
		t.Fatal("unchanged file installed again")
	}
}
