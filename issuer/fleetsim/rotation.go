package fleetsim

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"agoratokens/clock"
	"agoratokens/wire"
)

// A Fleet is a simulated fleet that stays up after it booted, for what
// happens over its tokens' lives rather than in the boot storm (Sim):
// every device keeps its connection, holds the tokens it was given,
// publishes its retained status (a wire.DeviceStatus with each token's
// name, kid and expiry, never the token) whenever they change, takes
// the pushes the issuer sends unasked on its token topic (a rotation
// campaign) as new tokens, and, with Renewals set, renews its tokens at
// a random point of their life as the agent does.

// FleetConfig configures a Fleet: the boot storm's Config (Rate paces
// the boot requests; Timeout bounds each wait) and the devices' life.
type FleetConfig struct {
	Config
	// Renewals is how many times each device renews its tokens after
	// the first ones arrived (0: never).
	Renewals int
	// RenewWindow is where in a token's life its renewal starts, a
	// random point between the two fractions (default 0.6, 0.8: the
	// agent's renew_window).
	RenewWindow [2]float64
	// RenewBefore is the agent's renew_before (default 30s): renewal
	// never starts later than that ahead of expiry.
	RenewBefore time.Duration
	// RequestTimeout is how long a device waits for a reply before it
	// asks again (default 10s, the agent's request_timeout). A device
	// refused with unavailable or rate_limited asks again after the
	// refusal's retry_after (at least 1s), with up to 50% jitter.
	RequestTimeout time.Duration
	// Rand draws renewal points and jitter, uniform in [0, 1) (nil:
	// math/rand/v2).
	Rand func() float64
}

// Fleet is a running simulated fleet (see FleetConfig).
type Fleet struct {
	sim    *Sim
	cfg    FleetConfig
	devs   []*liveDevice
	live   []*liveDevice // connected
	cancel chan struct{} // closed by Close: renewal timers stop
	wg     sync.WaitGroup

	mu      sync.Mutex
	changed chan struct{} // closed at the next change of any device
	closed  bool
}

// liveDevice is one device of a Fleet.
type liveDevice struct {
	device
	seq atomic.Int64 // packet ids

	// Under Fleet.mu.
	want     string             // id of the request in flight ("" none)
	wantKind string             // its kind: boot or renew
	answered chan struct{}      // closed when it is answered
	timeout  clock.Timer        // its request timeout
	tokens   []wire.TokenStatus // what it holds, sorted by name
	pushes   []string           // ids of the pushes it took
	renewed  int                // renewals answered with tokens
	errors   map[string]int     // error replies and bad messages, by code
	retried  map[string]int     // requests asked again, by reason
	boot     time.Time          // when its first tokens arrived
	renewals []time.Time        // when it sent each renewal request
}

// FleetStats is the fleet's state at one moment.
type FleetStats struct {
	Devices, Connected int
	// Holding counts the connected devices holding tokens.
	Holding int
	// Pushed counts devices that took a push; PushedTwice those that
	// took more than one; Pushes is every push taken.
	Pushed, PushedTwice, Pushes int
	// Renewed counts renewals answered with tokens, over all devices.
	Renewed int
	// Retried counts requests asked again, by reason: the refusal's
	// code (unavailable, rate_limited) or "timeout".
	Retried map[string]int
	// Errors counts other error replies and bad messages by code
	// ("bad_reply" for a message that fails a check, "unasked" for a
	// reply to no request in flight).
	Errors map[string]int
}

// NewFleet validates cfg and fills defaults.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	sim, err := New(cfg.Config)
	if err != nil {
		return nil, err
	}
	cfg.Config = sim.cfg
	if cfg.Renewals < 0 {
		return nil, fmt.Errorf("renewals: %d is negative", cfg.Renewals)
	}
	if cfg.RenewWindow == [2]float64{} {
		cfg.RenewWindow = [2]float64{0.6, 0.8}
	}
	if w := cfg.RenewWindow; w[0] < 0 || w[1] > 1 || w[0] > w[1] {
		return nil, fmt.Errorf("renew window %v: want 0 <= start <= end <= 1", w)
	}
	if cfg.RenewBefore < 0 {
		return nil, fmt.Errorf("renew before: %v is negative", cfg.RenewBefore)
	}
	if cfg.RenewBefore == 0 {
		cfg.RenewBefore = 30 * time.Second
	}
	if cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("request timeout: %v is negative", cfg.RequestTimeout)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	f := &Fleet{sim: sim, cfg: cfg, cancel: make(chan struct{}), changed: make(chan struct{})}
	f.devs = make([]*liveDevice, cfg.Devices)
	for i := range f.devs {
		f.devs[i] = &liveDevice{device: device{name: DeviceName(cfg.Prefix, i)},
			errors: map[string]int{}, retried: map[string]int{}}
	}
	return f, nil
}

// RenewalPoint is when, after a token of lifetime arrived, the agent
// starts renewing it, for a uniform draw u in [0, 1): inside window
// (fractions of the lifetime), the window scaled down, keeping its
// proportions, when it would end later than renewBefore ahead of expiry
// (or past half the lifetime). This is the agent's rule for a token
// just received (package agent, drawRenewal, age 0), restated here: the
// simulator does not import the agent.
func RenewalPoint(u float64, window [2]float64, lifetime, renewBefore time.Duration) time.Duration {
	latest := lifetime - min(renewBefore, lifetime/2)
	lo := time.Duration(window[0] * float64(lifetime))
	hi := time.Duration(window[1] * float64(lifetime))
	if hi > latest {
		lo = time.Duration(float64(lo) * float64(latest) / float64(hi))
		hi = latest
	}
	return lo + time.Duration(u*float64(hi-lo))
}

// Boot connects the fleet (ConnectParallel at a time), has every device
// ask for its tokens, at once or at Rate, and returns once every
// connected device holds tokens, or with an error when Timeout passes
// first. It returns how many devices could not connect.
func (f *Fleet) Boot(ctx context.Context) (connectFailed int, err error) {
	s := f.sim
	queue := make(chan *liveDevice)
	var failed atomic.Int64
	var workers sync.WaitGroup
	for range s.cfg.ConnectParallel {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for d := range queue {
				if tries, err := s.connect(ctx, &d.device); err != nil {
					if failed.Add(1) <= 5 {
						s.log.Warn("device could not connect", "device", d.name, "attempts", tries, "error", err)
					}
					continue
				}
				f.wg.Add(1)
				go func() {
					defer f.wg.Done()
					err := d.conn.readLoop(func(payload []byte) { f.onMessage(d, payload) })
					f.mu.Lock()
					closed := f.closed
					f.mu.Unlock()
					if !closed {
						s.log.Warn("device connection lost", "device", d.name, "error", err)
					}
				}()
			}
		}()
	}
	cancelled := feed(ctx, queue, f.devs)
	workers.Wait()
	if cancelled != nil {
		return 0, cancelled
	}
	for _, d := range f.devs {
		if d.conn != nil {
			f.live = append(f.live, d)
		}
	}
	s.log.Info("fleet connected", "devices", len(f.live), "failed", failed.Load())
	start := s.clk.Now()
	for i, d := range f.live {
		if s.cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / s.cfg.Rate * float64(time.Second)))
			if wait := due.Sub(s.clk.Now()); wait > 0 {
				pace := s.clk.NewTimer(wait) // pacing the load, not waiting for a condition
				select {
				case <-pace.C():
				case <-ctx.Done():
					pace.Stop()
					return 0, ctx.Err()
				}
			}
		}
		f.request(d, "boot")
	}
	s.log.Info("fleet asked for its tokens", "devices", len(f.live))
	err = f.Wait(ctx, func(st FleetStats) bool { return st.Holding == st.Connected })
	return int(failed.Load()), err
}

// request sends a device's request for all its tokens, and asks again
// after RequestTimeout while no reply came.
func (f *Fleet) request(d *liveDevice, kind string) {
	id := kind + "-" + strconv.FormatInt(d.seq.Add(1), 10)
	payload, err := wire.Encode(wire.Request{V: wire.SchemaVersion, ID: id, Tokens: f.cfg.Tokens})
	if err != nil {
		f.sim.log.Error("encode request", "error", err)
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	if kind == "renew" && d.wantKind != "renew" {
		d.renewals = append(d.renewals, f.sim.clk.Now())
	}
	d.want, d.wantKind = id, kind
	answered := make(chan struct{})
	d.answered = answered
	t := f.sim.clk.NewTimer(f.cfg.RequestTimeout)
	d.timeout = t
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		select {
		case <-t.C():
			f.mu.Lock()
			again := d.want == id && !f.closed
			if again {
				d.retried["timeout"]++
			}
			f.mu.Unlock()
			if again {
				f.request(d, kind)
			}
		case <-answered:
		case <-f.cancel:
			t.Stop()
		}
	}()
	if err := f.publish(d, f.sim.topics.Req(d.name), payload, false); err != nil {
		f.sim.log.Warn("request not sent", "device", d.name, "error", err)
	}
}

// answeredLocked ends the wait for the request in flight.
func (d *liveDevice) answeredLocked() {
	d.want = ""
	if d.timeout != nil {
		d.timeout.Stop()
		d.timeout = nil
	}
	if d.answered != nil {
		close(d.answered)
		d.answered = nil
	}
}

// publish publishes payload at QoS 1 with the device's next packet id
// (its PUBACK arrives in readLoop).
func (f *Fleet) publish(d *liveDevice, topic string, payload []byte, retain bool) error {
	id := uint16(d.seq.Add(1)%65535 + 1)
	b := make([]byte, 0, 2+len(topic)+2+len(payload))
	b = appendString(b, topic)
	b = binary.BigEndian.AppendUint16(b, id)
	b = append(b, payload...)
	first := byte(pktPublish | 1<<1)
	if retain {
		first |= 1
	}
	return d.conn.write(packet(first, b))
}

// onMessage takes a message on a device's token topic: the reply to its
// request in flight, or a push. The device then publishes its status.
func (f *Fleet) onMessage(d *liveDevice, payload []byte) {
	status, renewIn := f.take(d, payload)
	if status == nil {
		return
	}
	if err := f.publish(d, f.sim.topics.Status(d.name), status, true); err != nil {
		f.sim.log.Warn("status not published", "device", d.name, "error", err)
	}
	if renewIn > 0 {
		f.scheduleRenewal(d, renewIn)
	}
}

// take records a message's tokens and returns the device's new status
// (nil when the message brought none) and, when it is to renew again,
// after how long.
func (f *Fleet) take(d *liveDevice, payload []byte) ([]byte, time.Duration) {
	reply, err := wire.DecodeReply(payload)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, 0
	}
	defer f.signalLocked()
	switch {
	case err != nil:
		d.errors["bad_reply"]++
		return nil, 0
	case !reply.IsPush() && (d.want == "" || reply.ID != d.want):
		d.errors["unasked"]++
		return nil, 0
	case reply.Error != nil && (reply.Error.Code == wire.CodeUnavailable || reply.Error.Code == wire.CodeRateLimited):
		d.retried[reply.Error.Code]++
		kind := d.wantKind
		d.answeredLocked()
		wait := max(time.Duration(reply.Error.RetryAfter)*time.Second, time.Second)
		f.retryLocked(d, kind, wait+time.Duration(f.cfg.Rand()*float64(wait)/2))
		return nil, 0
	case reply.Error != nil:
		d.errors[reply.Error.Code]++
		d.answeredLocked()
		return nil, 0
	}
	if err := f.sim.checkGrants(reply.Tokens); err != nil || len(reply.Tokens) == 0 {
		d.errors["bad_reply"]++
		return nil, 0
	}
	switch {
	case reply.IsPush():
		d.pushes = append(d.pushes, reply.ID)
	case d.tokens == nil:
		d.boot = f.sim.clk.Now()
		d.answeredLocked()
		d.wantKind = ""
	default:
		d.renewed++
		d.answeredLocked()
		d.wantKind = ""
	}
	d.tokens = mergeTokens(d.tokens, reply.Tokens)
	status, err := wire.Encode(wire.DeviceStatus{V: wire.SchemaVersion, State: wire.StateOnline, Agent: "fleetsim",
		Tokens: d.tokens, At: f.sim.clk.Wall().Unix()})
	if err != nil {
		f.sim.log.Error("encode status", "device", d.name, "error", err)
		return nil, 0
	}
	// The agent draws each token's renewal point when the token
	// arrives; a device here renews its tokens together, at the draw of
	// the shortest-lived one.
	var lifetime time.Duration
	for _, g := range reply.Tokens {
		if l := time.Duration(g.Lifetime()) * time.Second; lifetime == 0 || l < lifetime {
			lifetime = l
		}
	}
	if len(d.renewals) >= f.cfg.Renewals || lifetime <= 0 || d.want != "" {
		return status, 0
	}
	return status, max(RenewalPoint(f.cfg.Rand(), f.cfg.RenewWindow, lifetime, f.cfg.RenewBefore), time.Nanosecond)
}

// retryLocked has the device ask again after wait.
func (f *Fleet) retryLocked(d *liveDevice, kind string, wait time.Duration) {
	d.wantKind = kind // a renewal retried is the same renewal
	t := f.sim.clk.NewTimer(wait)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		select {
		case <-t.C():
			f.request(d, kind)
		case <-f.cancel:
			t.Stop()
		}
	}()
}

// scheduleRenewal has the device ask for its tokens again after wait
// (the token's life, not a wait for a condition).
func (f *Fleet) scheduleRenewal(d *liveDevice, wait time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	t := f.sim.clk.NewTimer(wait)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		select {
		case <-t.C():
			f.request(d, "renew")
		case <-f.cancel:
			t.Stop()
		}
	}()
}

// mergeTokens replaces held tokens by the granted ones of the same
// name, and adds new names; the result is sorted by name.
func mergeTokens(held []wire.TokenStatus, gs []wire.Grant) []wire.TokenStatus {
	out := slices.Clone(held)
	for _, g := range gs {
		ts := wire.TokenStatus{Name: g.Name, KID: g.KID, ExpiresAt: g.ExpiresAt}
		if i := slices.IndexFunc(out, func(t wire.TokenStatus) bool { return t.Name == g.Name }); i >= 0 {
			out[i] = ts
		} else {
			out = append(out, ts)
		}
	}
	slices.SortFunc(out, func(a, b wire.TokenStatus) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

func (f *Fleet) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Stats returns the fleet's state now.
func (f *Fleet) Stats() FleetStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statsLocked()
}

func (f *Fleet) statsLocked() FleetStats {
	st := FleetStats{Devices: len(f.devs), Connected: len(f.live), Errors: map[string]int{}, Retried: map[string]int{}}
	for _, d := range f.live {
		if d.tokens != nil {
			st.Holding++
		}
		if len(d.pushes) > 0 {
			st.Pushed++
		}
		if len(d.pushes) > 1 {
			st.PushedTwice++
		}
		st.Pushes += len(d.pushes)
		st.Renewed += d.renewed
		for c, n := range d.errors {
			st.Errors[c] += n
		}
		for c, n := range d.retried {
			st.Retried[c] += n
		}
	}
	return st
}

// HoldingOnly counts the connected devices whose every token is signed
// with kid.
func (f *Fleet) HoldingOnly(kid string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range f.live {
		if d.tokens != nil && !slices.ContainsFunc(d.tokens, func(t wire.TokenStatus) bool { return t.KID != kid }) {
			n++
		}
	}
	return n
}

// Times returns when each connected device got its first tokens and
// when it sent each renewal request, on the fleet's clock.
func (f *Fleet) Times() (boot, renewals []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.live {
		if !d.boot.IsZero() {
			boot = append(boot, d.boot)
		}
		renewals = append(renewals, d.renewals...)
	}
	return boot, renewals
}

// Wait returns once done(Stats()) holds, checked at every change, or an
// error when Timeout passes or ctx ends first.
func (f *Fleet) Wait(ctx context.Context, done func(FleetStats) bool) error {
	timer := f.sim.clk.NewTimer(f.cfg.Timeout)
	defer timer.Stop()
	for {
		f.mu.Lock()
		st := f.statsLocked()
		next := f.changed
		f.mu.Unlock()
		if done(st) {
			return nil
		}
		select {
		case <-next:
		case <-timer.C():
			return fmt.Errorf("fleet: not done after %v: %+v", f.cfg.Timeout, st)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close disconnects every device and stops its renewals.
func (f *Fleet) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.mu.Unlock()
	close(f.cancel)
	for _, d := range f.devs {
		if d.conn != nil {
			d.conn.close()
		}
	}
	f.wg.Wait()
}
