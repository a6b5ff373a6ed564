package issuer

import (
	"encoding/json"
	"io"
	"time"

	"agoratokens/wire"
)

// FleetStatus is the fleet as `fleet status --json` prints it and the
// fleet page's API serves it (GET /fleet/api/fleet): one encoder for
// both, so the page and the command show the same data.
type FleetStatus struct {
	Devices []FleetDevice  `json:"devices"`
	Totals  FleetTotals    `json:"totals"`
	Issuers map[string]any `json:"issuers,omitempty"`
}

// FleetDevice is one device of a FleetStatus: its registry record with
// each token's time left.
type FleetDevice struct {
	DeviceRecord
	Tokens []FleetToken `json:"tokens"`
}

// FleetToken is a token a device holds, as its status says (never the
// token itself), with the seconds left until it expires (negative once
// expired).
type FleetToken struct {
	wire.TokenStatus
	ExpiresIn int64 `json:"expires_in"`
}

// FleetTotals counts the devices of a FleetStatus per kid and per state.
type FleetTotals struct {
	Devices   int            `json:"devices"`
	Online    int            `json:"online"`
	Offline   int            `json:"offline"`
	PerKID    map[string]int `json:"per_kid"`
	Malformed int64          `json:"malformed_statuses"`
}

// CountFleet counts the devices sel per state and kid; malformed is the
// number of statuses the registry ignored.
func CountFleet(sel []DeviceRecord, malformed int64) FleetTotals {
	t := FleetTotals{Devices: len(sel), PerKID: map[string]int{}, Malformed: malformed}
	for i := range sel {
		d := &sel[i]
		if d.Online {
			t.Online++
		} else {
			t.Offline++
		}
		for _, k := range d.KIDs() {
			t.PerKID[k]++
		}
	}
	return t
}

// NewFleetStatus builds the FleetStatus of the devices sel at now, with
// the issuer replicas' statuses (nil or empty: no "issuers").
func NewFleetStatus(sel []DeviceRecord, malformed int64, replicas map[string]wire.IssuerStatus, now time.Time) FleetStatus {
	out := FleetStatus{Devices: make([]FleetDevice, 0, len(sel)), Totals: CountFleet(sel, malformed)}
	for _, d := range sel {
		dj := FleetDevice{DeviceRecord: d, Tokens: make([]FleetToken, 0, len(d.Tokens))}
		for _, t := range d.Tokens {
			dj.Tokens = append(dj.Tokens, FleetToken{TokenStatus: t, ExpiresIn: t.ExpiresAt - now.Unix()})
		}
		out.Devices = append(out.Devices, dj)
	}
	if len(replicas) > 0 {
		out.Issuers = map[string]any{}
		for n, r := range replicas {
			out.Issuers[n] = r
		}
	}
	return out
}

// Write encodes the status as JSON; indent makes it readable.
func (f *FleetStatus) Write(w io.Writer, indent bool) error {
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(f)
}
