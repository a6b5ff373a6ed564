package issuer

import (
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/wire"
)

// The rotation campaign. `rotate --to ID` publishes a retained
// wire.Campaign on the issuers' campaign topic. Every replica (and any
// replica that starts later: the message is retained) then signs with
// ID and pushes fresh tokens to the online devices whose status shows a
// token of another kid, the earliest-expiring first, at its share of the
// campaign's rate. The devices are split between the replicas by a hash
// of the device id over the sorted names of the replicas online (their
// retained statuses on {root}/issuer/replicas/+), so that each device is
// pushed by one replica only; a replica pushes a device at most once per
// campaign, across its restarts too (campaignstate.go). A device offline during the campaign is pushed when its
// status says it is back, or gets new tokens when it next asks.

// DefaultCampaignRate is the devices pushed per second, over all
// replicas.
const DefaultCampaignRate = 50

// onCampaign follows a campaign published on the campaign topic.
func (s *Service) onCampaign(_ mqtt.Client, m mqtt.Message) {
	defer m.Ack()
	if len(m.Payload()) == 0 {
		return
	}
	var cp wire.Campaign
	if err := wire.Decode(m.Payload(), &cp); err != nil {
		s.log.Warn("ignoring a malformed campaign", "err", err)
		return
	}
	if err := validateCampaign(&cp); err != nil {
		s.log.Warn("ignoring an invalid campaign", "err", err)
		return
	}
	s.fleet.mu.Lock()
	same := s.fleet.campaign != nil && s.fleet.campaign.ID == cp.ID
	s.fleet.mu.Unlock()
	if same {
		return
	}
	pushed := s.loadPushed(cp.ID) // a restart mid-campaign
	s.fleet.mu.Lock()
	s.fleet.campaign = &cp
	s.fleet.pushed = pushed
	s.fleet.mu.Unlock()
	s.reload.Lock()
	st := s.state.Load()
	next := *st
	err := s.followCampaign(&next)
	if err == nil && next.signer != st.signer {
		s.setState(&next)
	}
	s.reload.Unlock()
	if err != nil {
		s.log.Error("cannot follow the rotation campaign; still signing with the configured certificate",
			"campaign", cp.ID, "to", cp.To, "err", err)
		return
	}
	s.log.Info("following a rotation campaign", "campaign", cp.ID, "kid", cp.To, "rate", cp.Rate)
	// The fleet loop publishes the replica's new status: this handler
	// runs on paho's router, where waiting for a publish's PUBACK would
	// stall every message, that PUBACK included, for opTimeout.
	s.fleet.announce()
	s.fleet.poke()
}

// validateCampaign checks a campaign's fields.
func validateCampaign(cp *wire.Campaign) error {
	if err := wire.ValidateName("campaign id", cp.ID); err != nil {
		return err
	}
	if len(cp.ID) > 32 {
		return fmt.Errorf("campaign id is %d bytes, max 32", len(cp.ID))
	}
	if err := wire.ValidateName("campaign kid", cp.To); err != nil {
		return err
	}
	if len(cp.To) > 24 {
		return fmt.Errorf("campaign kid is %d bytes, max 24", len(cp.To))
	}
	if cp.Rate <= 0 || cp.Rate > 100_000 {
		return fmt.Errorf("campaign rate %v is not between 0 and 100000", cp.Rate)
	}
	return nil
}

// followCampaign makes st sign with the campaign's certificate, when a
// campaign is followed (from Reload and onCampaign): a campaign outranks
// the config's active_certificate, which rotate also updates.
func (s *Service) followCampaign(st *state) error {
	s.fleet.mu.Lock()
	cp := s.fleet.campaign
	s.fleet.mu.Unlock()
	if cp == nil || st.signer.Active() == cp.To {
		return nil
	}
	sig, err := NewSigner(st.cfg.AppID, st.cfg.Certs(), cp.To, s.opts.Salt)
	if err != nil {
		return fmt.Errorf("campaign %s: certificate %q: %w (add it to certificates: on every replica)", cp.ID, cp.To, err)
	}
	if st.cfg.ActiveCertificate != cp.To {
		s.log.Warn("the rotation campaign on the broker outranks the config's active_certificate; use rotate --to to change it",
			"campaign", cp.ID, "kid", cp.To, "active_certificate", st.cfg.ActiveCertificate)
	}
	st.signer = sig
	return nil
}

// owner picks the replica that pushes a device.
func owner(device string, replicas []string) string {
	h := fnv.New32a()
	h.Write([]byte(device))
	return replicas[h.Sum32()%uint32(len(replicas))]
}

// campaignWork lists the devices this replica still has to push in the
// campaign, the earliest-expiring first.
func (s *Service) campaignWork(cp *wire.Campaign, replicas []string) []DeviceRecord {
	var todo []DeviceRecord
	for _, d := range s.fleet.registry.Snapshot() {
		if d.Online && d.HoldsOther(cp.To) && owner(d.ID, replicas) == s.name {
			todo = append(todo, d)
		}
	}
	s.fleet.mu.Lock()
	todo = slices.DeleteFunc(todo, func(d DeviceRecord) bool { return s.fleet.pushed[d.ID] })
	s.fleet.mu.Unlock()
	slices.SortStableFunc(todo, func(a, b DeviceRecord) int {
		ea, eb := a.EarliestExpiry(), b.EarliestExpiry()
		switch {
		case ea < eb:
			return -1
		case ea > eb:
			return 1
		}
		return 0
	})
	return todo
}

// fleetLoop republishes this replica's status every heartbeat and
// pushes the campaign's devices at the replica's share of its rate,
// until stopFleet.
func (s *Service) fleetLoop() {
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	pace := time.NewTimer(0)
	defer pace.Stop()
	var todo []DeviceRecord
	for {
		// Wait for something to do, or for the next push's turn.
		// (A nil channel is never ready.)
		next, turn := s.fleet.wake, (<-chan time.Time)(nil)
		if len(todo) > 0 {
			next, turn = nil, pace.C
		}
		select {
		case <-s.fleet.stop:
			return
		case <-beat.C:
			s.savePushed()
			s.publishReplica(wire.StateOnline)
			continue
		case <-s.fleet.announced:
			s.publishReplica(wire.StateOnline)
			continue
		case <-next:
		case <-turn:
		}
		s.fleet.mu.Lock()
		cp := s.fleet.campaign
		replicas := s.replicasLocked(time.Now())
		s.fleet.mu.Unlock()
		if c := s.client(); cp == nil || s.state.Load().signer.Active() != cp.To || c == nil || !c.IsConnectionOpen() {
			todo = nil // wait: a campaign, or the reconnect, pokes the loop
			continue
		}
		if len(todo) == 0 {
			todo = s.campaignWork(cp, replicas)
			if len(todo) == 0 {
				continue
			}
		}
		d := todo[0]
		todo = todo[1:]
		if s.pushCampaign(cp, d.ID, replicas) {
			interval := time.Duration(float64(time.Second) * float64(len(replicas)) / cp.Rate)
			pace.Reset(interval)
		} else {
			pace.Reset(0)
		}
		if len(todo) == 0 {
			s.fleet.poke() // look again: devices may have come online meanwhile
			s.savePushed()
			s.publishReplica(wire.StateOnline)
		}
	}
}

// pushCampaign pushes fresh tokens to one device if it still needs them
// and is still this replica's, reporting whether it did.
func (s *Service) pushCampaign(cp *wire.Campaign, device string, replicas []string) bool {
	d, ok := s.fleet.registry.Get(device)
	if !ok || !d.Online || !d.HoldsOther(cp.To) || owner(device, replicas) != s.name {
		return false
	}
	if o := s.out(); o == nil || !o.open() {
		return false // the connect handler pokes the loop again
	}
	s.fleet.mu.Lock()
	if s.fleet.pushed[device] || s.fleet.campaign != cp {
		s.fleet.mu.Unlock()
		return false
	}
	s.fleet.pushed[device] = true
	s.fleet.dirty = true
	s.fleet.mu.Unlock()
	st := s.state.Load()
	reply, result := s.decide(st, device, wire.PushPrefix+cp.To+"-"+cp.ID, nil, s.clk.Wall())
	if result != resultOK {
		return false // no longer granted anything: nothing to push
	}
	b, err := wire.Encode(reply)
	if err != nil {
		s.log.Error("encode push", "device", device, "err", err)
		return false
	}
	t := s.out().publish(s.topics.Token(device), 1, false, b)
	if !t.WaitTimeout(opTimeout) || t.Error() != nil {
		s.log.Warn("campaign push failed; the device gets new tokens at its next renewal",
			"device", device, "err", t.Error())
		return true
	}
	s.log.Debug("campaign push", "device", device, "campaign", cp.ID, "kid", cp.To)
	return true
}

// CampaignPushed lists the devices this replica pushed in the campaign
// it follows, sorted.
func (s *Service) CampaignPushed() []string {
	s.fleet.mu.Lock()
	out := make([]string, 0, len(s.fleet.pushed))
	for d := range s.fleet.pushed {
		out = append(out, d)
	}
	s.fleet.mu.Unlock()
	sortStrings(out)
	return out
}

func sortStrings(s []string) { slices.Sort(s) }
