package issuer

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// CampaignStateFile, in the state dir, lists the devices this replica
// pushed in the campaign it follows, so that a restart does not push
// them again. It is written at every heartbeat, at the end of each batch
// and at shutdown: a crash forgets at most a heartbeat's pushes.
const CampaignStateFile = "campaign.json"

type campaignDoc struct {
	V      int      `json:"v"`
	ID     string   `json:"id"`
	Pushed []string `json:"pushed"`
}

// loadPushed returns the devices pushed in campaign id before a restart
// (none if the file is about another campaign, or missing).
func (s *Service) loadPushed(id string) map[string]bool {
	out := map[string]bool{}
	b, err := os.ReadFile(filepath.Join(s.fleet.dir, CampaignStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return out
	}
	var d campaignDoc
	if err == nil {
		err = json.Unmarshal(b, &d)
	}
	if err != nil {
		s.log.Warn("cannot read the campaign state; devices pushed before the restart may be pushed again", "err", err)
		return out
	}
	if d.V != 1 || d.ID != id {
		return out
	}
	for _, dev := range d.Pushed {
		if len(out) >= s.fleet.registry.max {
			break
		}
		out[dev] = true
	}
	return out
}

// savePushed writes the campaign state if it changed.
func (s *Service) savePushed() {
	s.fleet.mu.Lock()
	if !s.fleet.dirty || s.fleet.campaign == nil {
		s.fleet.mu.Unlock()
		return
	}
	d := campaignDoc{V: 1, ID: s.fleet.campaign.ID, Pushed: make([]string, 0, len(s.fleet.pushed))}
	for dev := range s.fleet.pushed {
		d.Pushed = append(d.Pushed, dev)
	}
	s.fleet.dirty = false
	s.fleet.mu.Unlock()
	slices.Sort(d.Pushed)
	if err := writeFileAtomic(filepath.Join(s.fleet.dir, CampaignStateFile), d); err != nil {
		s.fleet.mu.Lock()
		s.fleet.dirty = true
		s.fleet.mu.Unlock()
		if ok, n := s.fleet.stateLogs.allow(); ok {
			s.log.Warn("cannot write the campaign state; after a restart some devices may be pushed again", "err", err, "suppressed", n)
		}
	}
}

// writeFileAtomic writes v as JSON to path (mode 0600) through a
// temporary file and a rename.
func writeFileAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
