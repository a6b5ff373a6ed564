package issuer

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"agoratokens/wire"
)

// The fleet page: /fleet/ on the HTTP listen address shows the fleet,
// its certificates and a rotation campaign, live. One HTML page, its
// script and its style sheet are embedded (operators run the issuer on
// closed networks: nothing is fetched from elsewhere). The page reads
// the JSON API below it and follows the server-sent events stream;
// docs/fleet-page.md documents both.
//
//	GET /fleet/                    the page
//	GET /fleet/api/fleet           FleetStatus (as fleet status --json)
//	GET /fleet/api/summary         FleetSummary
//	GET /fleet/api/devices/{id}    FleetDevice
//	GET /fleet/api/events          text/event-stream: "summary" events
//	                               (a FleetSummary, every second) and
//	                               "devices" events (the registry changed)
//
// Everything needs an API key: Basic (user = the key's name, password =
// the key), which the browser asks for itself, or a bearer header.

//go:embed fleetpage
var fleetAssets embed.FS

// ExpiringWithin is how close to expiry a device's earliest token must
// be for the page to count it as expiring.
const ExpiringWithin = 10 * time.Minute

// maxFleetStreams bounds the event streams open at once.
const maxFleetStreams = 64

// fleetRealm is the realm of the page's Basic challenge.
const fleetRealm = `Basic realm="agora-token-issuer fleet"`

// chartStep is the seconds per point of the summary's charts.
const chartStep = 10

// FleetSummary is what the page's header shows: counts, certificates,
// the campaign and the last hour's charts.
type FleetSummary struct {
	// Now is the issuer's time (unix seconds) the summary was made at.
	Now    int64  `json:"now"`
	Issuer string `json:"issuer"`
	// Active is the kid this issuer signs with; Certificates the kids
	// it knows.
	Active       string      `json:"active"`
	Certificates []string    `json:"certificates"`
	Totals       FleetTotals `json:"totals"`
	// Expiring counts devices whose earliest token expires within
	// ExpiringWithin (or has expired); Refused the devices whose status
	// reports a refusal by the policy.
	Expiring int `json:"expiring"`
	Refused  int `json:"refused"`
	// Version changes whenever the registry does: the page fetches
	// /fleet/api/fleet again when it sees a new one.
	Version  uint64           `json:"version"`
	Campaign *CampaignSummary `json:"campaign"`
	Charts   FleetCharts      `json:"charts"`
	Latest   map[string]int64 `json:"latest_expiry,omitempty"`
	Replicas []string         `json:"replicas"`
}

// FleetCharts are the last hour of requests per second and p99 signing
// latency, in points of Step seconds.
type FleetCharts struct {
	Step   int           `json:"step"`
	Points []RecentPoint `json:"points"`
}

// CampaignSummary is the rotation campaign this issuer follows and how
// far it has come.
type CampaignSummary struct {
	wire.Campaign
	Done       int      `json:"done"`
	ToDo       int      `json:"todo"`
	Stragglers int      `json:"stragglers"`
	Pending    []string `json:"pending,omitempty"`
	Behind     []string `json:"behind,omitempty"`
	// ETA is the seconds to go at the campaign's rate.
	ETA      int64 `json:"eta_seconds"`
	Complete bool  `json:"complete"`
	Safe     bool  `json:"safe"`
	// SafeAt is when no token of another kid can be live any more (unix
	// seconds, 0 when none is known).
	SafeAt  int64    `json:"safe_at,omitempty"`
	OldKIDs []string `json:"old_kids,omitempty"`
	// Verdict says it in words, as rotate --status does.
	Verdict string `json:"verdict"`
}

// fleetPage serves the page and its API.
type fleetPage struct {
	s       *Service
	assets  fs.FS
	streams chan struct{} // a place per event stream open
	version versionCounter
}

func (s *Service) newFleetPage() *fleetPage {
	sub, err := fs.Sub(fleetAssets, "fleetpage")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	p := &fleetPage{s: s, assets: sub, streams: make(chan struct{}, maxFleetStreams)}
	p.version.reg = s.fleet.registry
	p.version.pending = s.fleet.registry.Changed()
	return p
}

// register adds the page's routes to mux.
func (p *fleetPage) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /fleet", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/fleet/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /fleet/{$}", p.authed(p.asset("index.html", "text/html; charset=utf-8")))
	mux.HandleFunc("GET /fleet/app.js", p.authed(p.asset("app.js", "text/javascript; charset=utf-8")))
	mux.HandleFunc("GET /fleet/app.css", p.authed(p.asset("app.css", "text/css; charset=utf-8")))
	mux.HandleFunc("GET /fleet/api/fleet", p.authed(p.handleFleet))
	mux.HandleFunc("GET /fleet/api/summary", p.authed(p.handleSummary))
	mux.HandleFunc("GET /fleet/api/devices/{id}", p.authed(p.handleDevice))
	mux.HandleFunc("GET "+fleetEventsPath, p.authed(p.handleEvents)) // streamed by the front
}

// fleetViewer answers whether the request carries a valid API key, and
// whose: Basic (user = the key's name, password = the key) or Bearer.
// Every valid key may view the fleet for now.
func (s *Service) fleetViewer(r *http.Request) (string, bool) {
	keys := s.state.Load().keys
	if user, pass, ok := r.BasicAuth(); ok {
		k := keys.find(pass)
		return user, k != nil && k.operator && k.name == user
	}
	if key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		k := keys.find(strings.TrimSpace(key))
		if k == nil || !k.operator {
			return "", false
		}
		return k.name, true
	}
	return "", false
}

// authed refuses requests without a valid key, with the Basic challenge
// that makes a browser ask for one.
func (p *fleetPage) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		if _, ok := p.s.fleetViewer(r); !ok {
			w.Header().Set("WWW-Authenticate", fleetRealm)
			writeAPIError(w, &apiError{status: http.StatusUnauthorized, code: codeUnauthorized, message: "the fleet page needs an operator API key (apikey add NAME --role operator)"})
			return
		}
		h(w, r)
	}
}

func (p *fleetPage) asset(name, contentType string) http.HandlerFunc {
	b, err := fs.ReadFile(p.assets, name)
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
	}
}

// status is the fleet as fleet status --json shows it, with this
// issuer's own status for "issuers".
func (p *fleetPage) status(now time.Time) FleetStatus {
	reg := p.s.fleet.registry
	return NewFleetStatus(reg.Snapshot(), reg.Malformed(), map[string]wire.IssuerStatus{p.s.name: p.selfStatus()}, now)
}

func (p *fleetPage) selfStatus() wire.IssuerStatus {
	st := p.s.status(wire.StateOnline)
	st.Active = p.s.state.Load().signer.Active()
	st.LatestExpiry = p.s.fleet.ledger.snapshot()
	return st
}

func (p *fleetPage) handleFleet(w http.ResponseWriter, _ *http.Request) {
	f := p.status(p.s.clk.Wall())
	w.Header().Set("Content-Type", "application/json")
	_ = f.Write(w, false)
}

func (p *fleetPage) handleSummary(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, p.summary(p.s.clk.Wall()))
}

func (p *fleetPage) handleDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := wire.ValidateDeviceID(id); err != nil {
		writeAPIError(w, &apiError{status: http.StatusBadRequest, code: wire.CodeInvalidRequest, field: "id", message: err.Error()})
		return
	}
	d, ok := p.s.fleet.registry.Get(id)
	if !ok {
		writeAPIError(w, &apiError{status: http.StatusNotFound, code: codeNotFound, message: fmt.Sprintf("no device %q in the fleet registry", id)})
		return
	}
	f := NewFleetStatus([]DeviceRecord{d}, 0, nil, p.s.clk.Wall())
	out := FleetDeviceDetail{FleetDevice: f.Devices[0], Tokens: make([]FleetTokenDetail, 0, len(d.Tokens))}
	// What the policy grants the device names each token's service and
	// channel: its status carries only name, kid and expiry.
	grants, _ := p.s.state.Load().policy.Grants(id, nil)
	for _, t := range f.Devices[0].Tokens {
		td := FleetTokenDetail{FleetToken: t}
		for _, g := range grants {
			if g.Name == t.Name {
				td.Service, td.Channel = g.Service, g.Channel
			}
		}
		out.Tokens = append(out.Tokens, td)
	}
	writeJSON(w, http.StatusOK, out)
}

// FleetDeviceDetail is one device as GET /fleet/api/devices/{id} shows
// it: a FleetDevice whose tokens also name the service and channel the
// policy grants under their names.
type FleetDeviceDetail struct {
	FleetDevice
	Tokens []FleetTokenDetail `json:"tokens"`
}

// FleetTokenDetail is a FleetToken with its grant's service and channel
// (absent when the policy no longer grants that name).
type FleetTokenDetail struct {
	FleetToken
	Service string `json:"service,omitempty"`
	Channel string `json:"channel,omitempty"`
}

// summary computes the page's header at now.
func (p *fleetPage) summary(now time.Time) FleetSummary {
	devs := p.s.fleet.registry.Snapshot()
	st := p.s.state.Load()
	sum := FleetSummary{Now: now.Unix(), Issuer: p.s.name, Active: st.signer.Active(),
		Totals:   CountFleet(devs, p.s.fleet.registry.Malformed()),
		Version:  p.version.get(),
		Charts:   FleetCharts{Step: chartStep, Points: p.s.metrics.recent.series(chartStep)},
		Latest:   p.s.fleet.ledger.snapshot(),
		Replicas: p.s.Replicas(),
	}
	for _, c := range st.cfg.Certificates {
		sum.Certificates = append(sum.Certificates, c.ID)
	}
	for i := range devs {
		d := &devs[i]
		if e := d.EarliestExpiry(); e != 0 && e-now.Unix() <= int64(ExpiringWithin/time.Second) {
			sum.Expiring++
		}
		if len(d.Refused) > 0 {
			sum.Refused++
		}
	}
	p.s.fleet.mu.Lock()
	cp := p.s.fleet.campaign
	p.s.fleet.mu.Unlock()
	if cp != nil {
		sum.Campaign = campaignSummary(st.cfg, *cp, devs, p.s.replicaStatuses(p.selfStatus()), sum.Latest, now)
	}
	return sum
}

// campaignSummary is a campaign's progress and verdict at now.
func campaignSummary(cfg *Config, cp wire.Campaign, devs []DeviceRecord, replicas map[string]wire.IssuerStatus, latest map[string]int64, now time.Time) *CampaignSummary {
	latest = BoundUnrecorded(cfg, cp.To, latest, time.Unix(cp.StartedAt, 0))
	pr := CampaignProgress(cp.To, devs, replicas, latest, now)
	c := &CampaignSummary{Campaign: cp, Done: pr.Done, ToDo: pr.ToDo, Stragglers: pr.Stragglers,
		Pending: pr.Pending, Behind: pr.Behind, Complete: pr.Complete(), Safe: pr.Safe(now), OldKIDs: pr.OldKIDs}
	if !pr.SafeAt.IsZero() {
		c.SafeAt = pr.SafeAt.Unix()
	}
	if cp.Rate > 0 {
		c.ETA = int64(float64(pr.ToDo)/cp.Rate + 0.999)
	}
	old := strings.Join(pr.OldKIDs, ", ")
	if old == "" {
		old = "the old certificate"
	}
	switch {
	case !c.Complete && len(pr.Behind) > 0:
		c.Verdict = fmt.Sprintf("in progress: %d to do; replicas not signing with %s yet: %s", pr.ToDo, cp.To, strings.Join(pr.Behind, ", "))
	case !c.Complete:
		c.Verdict = fmt.Sprintf("in progress: %d to do", pr.ToDo)
	case c.Safe:
		c.Verdict = fmt.Sprintf("complete; safe to disable %s now", old)
	case pr.Stragglers > 0:
		c.Verdict = fmt.Sprintf("complete; %d offline devices still hold a live token of %s", pr.Stragglers, old)
	default:
		c.Verdict = fmt.Sprintf("complete; safe to disable %s at %s", old, pr.SafeAt.UTC().Format(time.RFC3339))
	}
	return c
}

// handleEvents streams the summary every second and a "devices" event
// whenever the registry changed, until the client or the issuer goes.
func (p *fleetPage) handleEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case p.streams <- struct{}{}:
		defer func() { <-p.streams }()
	default:
		writeAPIError(w, &apiError{status: http.StatusServiceUnavailable, code: wire.CodeUnavailable,
			message: fmt.Sprintf("too many fleet event streams (max %d)", maxFleetStreams), retryAfter: 5})
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	tick := p.s.clk.NewTimer(0)
	defer tick.Stop()
	var sent uint64
	first := true
	for {
		select {
		case <-r.Context().Done():
			return
		case <-p.s.fleet.stop:
			return
		case <-tick.C():
		}
		tick.Reset(time.Second)
		sum := p.summary(p.s.clk.Wall())
		var buf bytes.Buffer
		if first || sum.Version != sent {
			fmt.Fprintf(&buf, "event: devices\ndata: {\"version\":%d}\n\n", sum.Version)
			sent, first = sum.Version, false
		}
		b, err := json.Marshal(sum)
		if err != nil {
			return
		}
		fmt.Fprintf(&buf, "retry: 2000\nevent: summary\ndata: %s\n\n", b)
		// The server's write timeout is for requests; a stream extends
		// its deadline at each event.
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// versionCounter numbers the registry's changes: get returns a number
// that grows each time the registry changed since the last call.
type versionCounter struct {
	reg *Registry

	mu      sync.Mutex
	n       uint64
	pending <-chan struct{}
}

func (v *versionCounter) get() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	select {
	case <-v.pending:
		v.n++
		v.pending = v.reg.Changed()
	default:
	}
	return v.n
}
