package broker

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"agoratokens/issuer/devices"
)

// racyWindow is how long after a write the credentials file's stamp
// cannot tell that write from the next one. File timestamps come from a
// coarse clock (a kernel tick, a second on some filesystems), and a
// rotation keeps the file's size: two saves a few milliseconds apart can
// leave the same mtime and size. Within the window the content decides.
const racyWindow = 2 * time.Second

// fileStamp identifies a version of the credentials file without
// reading it. A save renames a new file into place, which changes the
// inode; ctime catches an in-place write that restored an old mtime.
type fileStamp struct {
	exists   bool
	size     int64
	modTime  int64 // Unix nanoseconds
	dev, ino uint64
	ctime    int64 // Unix nanoseconds; 0 where unknown
}

// loadedFile is what the hook knows of the file it last read.
type loadedFile struct {
	stamp fileStamp
	sum   [sha256.Size]byte
	// racy: the file was read within racyWindow of its mtime, so an
	// unchanged stamp does not prove unchanged content.
	racy bool
}

// racy reports whether a file read at readAt may be overwritten later
// with the same mtime as the version read, i.e. whether its stamp is too
// fresh to be trusted.
func racy(s fileStamp, readAt time.Time) bool {
	return s.exists && readAt.Sub(time.Unix(0, s.modTime)) < racyWindow
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{exists: true, size: fi.Size(), modTime: fi.ModTime().UnixNano()}
	s.dev, s.ino, s.ctime = sysStamp(fi)
	return s, nil
}

// readCredentials stats then reads the credentials file: a write in
// between leaves an older stamp than the content, so the next check
// reads again, never the reverse. A missing file reads as empty.
func readCredentials(path string) (fileStamp, []byte, error) {
	stamp, err := stampOf(path)
	if err != nil {
		return fileStamp{}, nil, fmt.Errorf("broker: stat device credentials: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil, fmt.Errorf("broker: read device credentials: %w", err)
	}
	return stamp, data, nil
}

// reload reads the credentials file and returns the devices it no longer
// lists. On error the old credentials stay.
func (h *authHook) reload() (map[string]struct{}, error) {
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	readAt := time.Now()
	stamp, data, err := readCredentials(h.cfg.credentialsFile)
	if err != nil {
		return nil, err
	}
	return h.install(stamp, data, readAt)
}

// install parses a read of the credentials file and makes it current.
func (h *authHook) install(stamp fileStamp, data []byte, readAt time.Time) (map[string]struct{}, error) {
	f, err := devices.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("broker: device credentials %s: %w", h.cfg.credentialsFile, err)
	}
	removed := map[string]struct{}{}
	if old := h.creds.Load(); old != nil {
		for _, d := range old.Devices() {
			if !f.Has(d.Name) {
				removed[d.Name] = struct{}{}
			}
		}
		h.cfg.log.Info("device credentials reloaded", "devices", f.Len(), "removed", len(removed))
	}
	h.creds.Store(f)
	h.loaded = loadedFile{stamp: stamp, sum: sha256.Sum256(data), racy: racy(stamp, readAt)}
	return removed, nil
}

// reloadIfChanged picks up devices added or rotated while the broker
// runs: it is called when a login fails. It costs a stat, and a read
// only when the stamp changed or is too fresh to be trusted.
func (h *authHook) reloadIfChanged() {
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	readAt := time.Now()
	stamp, err := stampOf(h.cfg.credentialsFile)
	if err != nil || (stamp == h.loaded.stamp && !h.loaded.racy) {
		return
	}
	stamp, data, err := readCredentials(h.cfg.credentialsFile)
	if err == nil && stamp == h.loaded.stamp && sha256.Sum256(data) == h.loaded.sum {
		h.loaded.racy = racy(stamp, readAt)
		return
	}
	if err == nil {
		_, err = h.install(stamp, data, readAt)
	}
	if err != nil {
		h.cfg.log.Error("device credentials changed but cannot be read; keeping the old ones", "error", err)
	}
}
