package issuer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/wire"
)

// NewCampaign returns a campaign to kid at rate devices a second,
// started at now, with a fresh id.
func NewCampaign(kid string, rate float64, now time.Time) wire.Campaign {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return wire.Campaign{V: wire.SchemaVersion, ID: fmt.Sprintf("c%x-%s", now.Unix(), hex.EncodeToString(b[:])),
		To: kid, Rate: rate, StartedAt: now.Unix()}
}

// PublishCampaign publishes cp, retained, on the campaign topic: every
// replica running follows it, and every replica started later too.
func PublishCampaign(ctx context.Context, c mqtt.Client, topics wire.Topics, cp wire.Campaign) error {
	if err := validateCampaign(&cp); err != nil {
		return err
	}
	b, err := wire.Encode(cp)
	if err != nil {
		return err
	}
	t := c.Publish(topics.Campaign(), 1, true, b)
	select {
	case <-t.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("publish campaign: %w", err)
	}
	return nil
}

// Progress is how far a campaign to kid To has come, from the fleet's
// statuses and the replicas'.
type Progress struct {
	To string
	// Done are the online devices holding only To tokens (or none);
	// ToDo the online devices still holding another kid's token.
	Done, ToDo int
	// Stragglers are offline devices holding a live token of another
	// kid: they get To tokens when they next ask.
	Stragglers int
	// Pending names devices still to do, then stragglers (at most 20).
	Pending []string
	// Behind names the replicas online that do not sign with To yet;
	// Replicas counts the replicas online.
	Behind   []string
	Replicas int
	// SafeAt is when the last token signed with another kid expires:
	// the latest expiry any replica (or the local ledger) recorded and
	// any device reports. Zero when none is known.
	SafeAt time.Time
	// OldKIDs are the other kids seen.
	OldKIDs []string
}

// Complete reports whether every online device holds only To tokens and
// every replica signs with To.
func (p *Progress) Complete() bool { return p.ToDo == 0 && len(p.Behind) == 0 && p.Replicas > 0 }

// Safe reports whether the old certificates may be disabled at now: the
// campaign is complete and no token signed with another kid can be live.
func (p *Progress) Safe(now time.Time) bool {
	return p.Complete() && p.Stragglers == 0 && !now.Before(p.SafeAt)
}

// BoundUnrecorded adds to latest, for every certificate of cfg other
// than to that it has no record of (tokens signed before the issuer kept
// its ledger, or by a replica whose status is gone), the latest expiry
// such a token could have: switched at the campaign's start, it lived
// at most limits.max_ttl.
func BoundUnrecorded(cfg *Config, to string, latest map[string]int64, startedAt time.Time) map[string]int64 {
	out := map[string]int64{}
	for k, v := range latest {
		out[k] = v
	}
	for _, c := range cfg.Certificates {
		if _, ok := out[c.ID]; !ok && c.ID != to {
			out[c.ID] = startedAt.Add(cfg.Limits.MaxTTL).Unix()
		}
	}
	return out
}

// CampaignProgress computes a campaign's progress at now. latest is the
// latest expiry per kid signed (replicas' statuses merged with the local
// ledger).
func CampaignProgress(to string, devices []DeviceRecord, replicas map[string]wire.IssuerStatus, latest map[string]int64, now time.Time) Progress {
	p := Progress{To: to}
	var stragglers []string
	old := map[string]bool{}
	safe := int64(0)
	for kid, e := range latest {
		if kid != to {
			old[kid] = true
			safe = max(safe, e)
		}
	}
	for _, d := range devices {
		liveOld := false
		for _, t := range d.Tokens {
			if t.KID != to {
				old[t.KID] = true
				safe = max(safe, t.ExpiresAt)
				liveOld = liveOld || t.ExpiresAt > now.Unix()
			}
		}
		switch {
		case d.Online && d.HoldsOther(to):
			p.ToDo++
			if len(p.Pending) < 20 {
				p.Pending = append(p.Pending, d.ID)
			}
		case d.Online:
			p.Done++
		case liveOld:
			p.Stragglers++
			stragglers = append(stragglers, d.ID)
		}
	}
	for _, id := range stragglers {
		if len(p.Pending) >= 20 {
			break
		}
		p.Pending = append(p.Pending, id+" (offline)")
	}
	for name, r := range replicas {
		if r.State != wire.StateOnline {
			continue
		}
		p.Replicas++
		if r.Active != to {
			p.Behind = append(p.Behind, name)
		}
	}
	slices.Sort(p.Behind)
	if safe > 0 {
		p.SafeAt = time.Unix(safe, 0)
	}
	for k := range old {
		p.OldKIDs = append(p.OldKIDs, k)
	}
	slices.Sort(p.OldKIDs)
	return p
}
