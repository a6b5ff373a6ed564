package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"agoratokens/atomicfile"
	"agoratokens/wire"
)

// stateVersion is the version of a persisted token file.
const stateVersion = 1

// savedToken is one persisted token: the grant, and what the device knew
// about when it arrived, so its age can be told after a restart.
type savedToken struct {
	V     int        `json:"v"`
	Grant wire.Grant `json:"grant"`
	// ReceivedWall is the device's wall clock when the token arrived
	// (Unix seconds); only for people reading the file.
	ReceivedWall int64 `json:"received_wall"`
	// BootID and ReceivedUptime (CLOCK_BOOTTIME, ns) place the arrival on
	// a clock that survives an agent restart but not a reboot.
	BootID         string `json:"boot_id,omitempty"`
	ReceivedUptime int64  `json:"received_uptime_ns,omitempty"`
}

// bootRemaining is how much of a persisted token's lifetime is left when
// the agent starts, and how that was told. The monotonic clock does not
// survive a restart, so:
//
//   - same boot (boot id matches): CLOCK_BOOTTIME is still the clock the
//     token's arrival was measured on; the remaining time is exact and
//     the wall clock is not consulted.
//   - after a reboot, the wall clock is all there is: remaining =
//     expires_at − wall, capped at the lifetime. But a board without a
//     battery-backed RTC boots with a stale clock (fake-hwclock) until NTP
//     steps it; a wall clock earlier than the token's issued_at is
//     provably wrong, and then nothing bounds the token's age, so the
//     token is not served (remaining 0) and a fresh one is requested.
//
// A wall clock that is wrong but later than issued_at can make a token
// look older than it is (served for less time: safe) or, if it lags the
// true time, younger; the issuer-side answer to that is a sane ttl, and
// the media process's renew op covers a rejected token.
func bootRemaining(s *savedToken, bootID string, uptime time.Duration, wall time.Time) (time.Duration, string) {
	life := time.Duration(s.Grant.Lifetime()) * time.Second
	if s.BootID != "" && s.BootID == bootID && uptime >= time.Duration(s.ReceivedUptime) {
		return life - (uptime - time.Duration(s.ReceivedUptime)), "same boot: uptime clock"
	}
	if wall.Unix() < s.Grant.IssuedAt {
		return 0, "wall clock is before the token's issued_at: not trusted"
	}
	left := time.Unix(s.Grant.ExpiresAt, 0).Sub(wall)
	if left > life {
		left = life
	}
	return left, "after reboot: wall clock"
}

// maxStateFile bounds how much of a state file is read: a good one is a
// few hundred bytes, and a board with 512 MB must not read a huge file
// planted or left in the state directory into memory.
const maxStateFile = 64 << 10

// store persists the current tokens in the state directory, one file per
// token name, each replaced atomically. It is used from one goroutine
// (the engine's loop, and its start before that).
type store struct {
	dir string
	log *slog.Logger
	// uid is who must own a state file for it to be trusted (the agent's
	// own effective uid).
	uid int
}

func fileName(name string) string { return "token-" + name + ".json" }

// load returns the persisted tokens. A file that cannot be read as a good
// token (corrupt, oversized, owned by someone else) is named in a
// warning, moved aside (name.corrupt-TIMESTAMP) when the directory allows
// it, and ignored; leftover temporary files of an interrupted write are
// removed. The error is for a state directory that cannot be created or
// listed: the engine then serves from memory.
func (s *store) load(wall time.Time) ([]*savedToken, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	var out []*savedToken
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(s.dir, name)
		switch {
		case strings.HasSuffix(name, ".tmp") && strings.HasPrefix(name, "token-"):
			if err := os.Remove(path); err != nil {
				s.log.Warn("cannot remove an unfinished state file", "file", path, "err", err)
			} else {
				s.log.Info("removed an unfinished state file", "file", path)
			}
			continue
		case !strings.HasPrefix(name, "token-") || !strings.HasSuffix(name, ".json") || !e.Type().IsRegular():
			continue
		}
		st, err := readSaved(path, strings.TrimSuffix(strings.TrimPrefix(name, "token-"), ".json"), s.uid)
		if err != nil {
			aside := path + ".corrupt-" + wall.UTC().Format("20060102T150405Z")
			if rerr := os.Rename(path, aside); rerr != nil {
				s.log.Warn("state file is not usable; ignored (cannot move it aside)", "file", path, "err", err, "rename_err", rerr)
				continue
			}
			s.log.Warn("state file is not usable; moved aside", "file", path, "moved_to", aside, "err", err)
			continue
		}
		out = append(out, st)
	}
	return out, nil
}

// readSaved reads the state file at path, which must hold token name and
// be owned by uid (a negative uid skips that check).
func readSaved(path, name string, uid int) (*savedToken, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if owner, ok := fileOwner(fi); ok && uid >= 0 && owner != uid {
		return nil, fmt.Errorf("owned by uid %d, not the agent's uid %d: not trusted", owner, uid)
	}
	if fi.Size() > maxStateFile {
		return nil, fmt.Errorf("%d bytes, over the %d-byte limit of a state file", fi.Size(), maxStateFile)
	}
	return parseSaved(f, name) // the file may have grown since the stat
}

// parseSaved reads a state file's content for token name from r, at most
// maxStateFile bytes of it.
func parseSaved(r io.Reader, name string) (*savedToken, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxStateFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxStateFile {
		return nil, fmt.Errorf("over the %d-byte limit of a state file", maxStateFile)
	}
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	var st savedToken
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if st.V != stateVersion {
		return nil, fmt.Errorf("version %d is not %d", st.V, stateVersion)
	}
	if st.Grant.Name != name {
		return nil, fmt.Errorf("holds token %q, not %q", st.Grant.Name, name)
	}
	if err := checkGrant(&st.Grant); err != nil {
		return nil, err
	}
	return &st, nil
}

// save writes one token atomically and durably (package atomicfile: a
// temporary token-NAME.json.*.tmp, fsync, rename, fsync of the
// directory), mode 0600, creating the state directory if it is missing
// (it may have been unusable at start).
func (s *store) save(st *savedToken) error {
	st.V = stateVersion
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("persist token %q: state dir: %w", st.Grant.Name, err)
	}
	path := filepath.Join(s.dir, fileName(st.Grant.Name))
	if err := atomicfile.WritePrivate(path, append(b, '\n')); err != nil {
		return fmt.Errorf("persist token %q: %w", st.Grant.Name, err)
	}
	return nil
}
