package issuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// LedgerFile is the file in the state dir that records, per certificate
// id, the latest expiry of any token the issuer signed with it.
const LedgerFile = "signed.json"

// ledgerSlack is how far ahead of a token's expiry the ledger records:
// the file is written at most once per slack per certificate, not at
// every token, and the time it names is never earlier than the truth.
const ledgerSlack = 60 // seconds

// ledgerDoc is the file's content.
type ledgerDoc struct {
	V int `json:"v"`
	// LatestExpiry maps a kid to unix seconds.
	LatestExpiry map[string]int64 `json:"latest_expiry"`
}

// expiryLedger is the issuer's record of the latest expiry it signed
// per kid, kept in the state dir so that it survives restarts: the
// answer to "can a token signed with this certificate still be live?".
type expiryLedger struct {
	path string
	log  *slog.Logger
	logs rateLog

	mu     sync.Mutex
	latest map[string]int64 // what the file says (rounded up by the slack)
}

// openLedger reads the ledger in dir (none yet is fine).
func openLedger(dir string, log *slog.Logger) *expiryLedger {
	l := &expiryLedger{path: filepath.Join(dir, LedgerFile), log: log,
		logs: rateLog{every: time.Minute, now: time.Now}, latest: map[string]int64{}}
	m, err := ReadLedger(dir)
	if err != nil {
		log.Error("cannot read the signed-expiry ledger; starting a new one", "err", err)
	}
	maps.Copy(l.latest, m)
	return l
}

// record notes that a token signed with kid expires at exp, writing the
// file when exp passes what it says.
func (l *expiryLedger) record(kid string, exp int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if exp <= l.latest[kid] {
		return
	}
	prev := l.latest[kid]
	l.latest[kid] = exp + ledgerSlack
	if err := l.writeLocked(); err != nil {
		l.latest[kid] = prev // try again at the next token
		if ok, n := l.logs.allow(); ok {
			l.log.Error("cannot write the signed-expiry ledger; certificate remove cannot tell when this certificate's tokens expire",
				"kid", kid, "err", err, "suppressed", n)
		}
	}
}

// snapshot returns the ledger's latest expiry per kid.
func (l *expiryLedger) snapshot() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.latest)
}

// writeLocked merges the file (another replica may share the dir) and
// replaces it atomically.
func (l *expiryLedger) writeLocked() error {
	dir := filepath.Dir(l.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if on, err := ReadLedger(dir); err == nil {
		for k, v := range on {
			if v > l.latest[k] {
				l.latest[k] = v
			}
		}
	}
	b, err := json.Marshal(ledgerDoc{V: 1, LatestExpiry: l.latest})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, LedgerFile+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), l.path)
}

// ReadLedger returns the latest expiry (unix seconds) the issuer signed
// per kid, from the ledger in the state dir; an empty map when there is
// none yet.
func ReadLedger(stateDir string) (map[string]int64, error) {
	path := filepath.Join(stateDir, LedgerFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]int64{}, nil
	}
	if err != nil {
		return nil, err
	}
	var d ledgerDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if d.V != 1 {
		return nil, fmt.Errorf("%s: version %d is not supported", path, d.V)
	}
	if d.LatestExpiry == nil {
		d.LatestExpiry = map[string]int64{}
	}
	return d.LatestExpiry, nil
}
