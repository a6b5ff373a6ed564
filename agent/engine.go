package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/sync/errgroup"

	"agoratokens/clock"
	"agoratokens/wire"
)

// Transport carries requests to a token source and brings replies back:
// the MQTT broker or an HTTP token server.
type Transport interface {
	// Run keeps the transport up until ctx ends (then, for MQTT, marks
	// the device offline and disconnects). It calls h.Connected after
	// each (re)connection, h.Disconnected after each loss, and
	// h.Unsolicited with each reply nobody is waiting for (pushes, late
	// replies). The engine sends requests only between Connected and
	// Disconnected.
	Run(ctx context.Context, h TransportHooks) error
	// Fetch sends req and waits for its reply until ctx ends.
	Fetch(ctx context.Context, req wire.Request) (*wire.Reply, error)
	// State is "connected" or "disconnected", for the status op.
	State() string
	// Report publishes the device's status (a no-op where there is no
	// place to publish it).
	Report(st wire.DeviceStatus)
}

// TransportHooks are the engine's callbacks from a Transport.
type TransportHooks struct {
	Connected    func()
	Disconnected func()
	Unsolicited  func(*wire.Reply)
}

// RequestWaiter is a Transport that wants to hear, at each step while
// requests wait for its connection, when the earliest token they would
// renew expires (zero: none valid), so as to connect at once and in time
// (MQTT).
type RequestWaiter interface{ RequestHeld(expires time.Time) }

// Deps are the engine's collaborators; zero fields get the real ones.
type Deps struct {
	Logger *slog.Logger
	Clock  clock.Clock
	// Transport defaults to MQTT or HTTP as the config says.
	Transport Transport
	// DeviceID resolves device_id: auto (given device_id_prefix). Nil
	// uses package device (Pi serial, else machine id).
	DeviceID func(prefix string) (string, error)
	// BootClock returns the boot id and CLOCK_BOOTTIME (see bootRemaining).
	BootClock func() (bootID string, uptime time.Duration, err error)
	// OnHealth is called, from the engine's loop, when Health changes.
	OnHealth func(Health)
	// Rand draws each token's renewal point in renew_window (tests seed
	// it). Nil: a source seeded from crypto/rand, different on each
	// device and each start.
	Rand *mrand.Rand
}

// subscriberBuffer is how many events a subscriber may lag behind before
// it is dropped.
const subscriberBuffer = 64

// persistRetry is how often tokens that could not be persisted (state
// directory unusable, read-only or full) are tried again.
const persistRetry = time.Minute

// recentRequests is how many sent request ids are remembered, so that a
// reply arriving after its timeout (queued by the broker) is recognised.
const recentRequests = 32

// Engine keeps the device's tokens: it implements Source.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	clk    clock.Clock
	tr     Transport
	store  *store
	boot   func() (string, time.Duration, error)
	health func(Health)
	rnd    *mrand.Rand // used with mu held
	device string
	topics wire.Topics
	ready  chan struct{}

	wake    chan struct{}
	results chan fetchResult
	pushes  chan *wire.Reply
	syncs   chan chan struct{}
	reqBase string
	reqSeq  uint64

	mu       sync.Mutex
	slots    map[string]*slot
	discover *slot // when every granted token is kept: the "all" request
	attempts map[string]*attempt
	recent   map[string]*attempt // the last recentRequests sent, by id
	order    []string
	anchor   anchor
	subs     map[int]chan Event
	nextSub  int
	dirty    bool // status to republish
	online   bool // the transport is connected: requests may be sent
	held     bool // a request is due but waits for the connection
	saves    []*savedToken
	lastH    Health
	hSet     bool
	// stateErr is why tokens are not being persisted ("" while they
	// are), for Status.
	stateErr string

	// Owned by the loop (and loadState before it): tokens not yet
	// persisted, by name, and when to try them again after a failure.
	unsaved   map[string]*savedToken
	persistOK bool
	retrySave time.Time
}

// slot is one token name's schedule.
type slot struct {
	name       string
	tok        *Token
	tokSeq     uint64 // the request behind tok (see held)
	state      TokenState
	bo         *backoff.ExponentialBackOff
	failures   int
	lastFail   time.Time
	wait       time.Duration
	inflight   string
	forced     bool
	lastForced time.Time
	// renewAt is when, after tok arrived, its renewal starts: drawn once
	// per token in renew_window (see drawRenewal). warned: will_expire
	// was emitted for tok.
	renewAt time.Duration
	warned  bool
	// refused is the issuer's refusal of this token (forbidden,
	// invalid_request) until it is granted again; solo: ask for it in a
	// request of its own (a shared request was refused).
	refused *IssuerError
	solo    bool
}

// attempt is one request in flight (or, in Engine.recent, sent lately).
type attempt struct {
	id string
	// seq orders the engine's requests: a reply to a later request is
	// newer, whatever the issuer's clock says.
	seq      uint64
	names    []string // nil: every granted token
	sentAt   time.Time
	deadline time.Time
	cancel   context.CancelFunc
}

type fetchResult struct {
	id    string
	reply *wire.Reply
	err   error
}

// anchor ties the issuer's clock to ours: issuer time issuer (Unix s) was
// no earlier than mono. It ages a pushed token that may have waited in the
// broker.
type anchor struct {
	issuer int64
	mono   time.Time
	seq    uint64 // the request whose reply set it
}

var errNoReply = errors.New("no reply within request_timeout")

// New checks cfg, fills in defaults and builds an engine. It reads the
// secret files if the config has not yet done so.
func New(cfg Config, deps Deps) (*Engine, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real()
	}
	if deps.BootClock == nil {
		deps.BootClock = bootClock
	}
	if deps.DeviceID == nil {
		deps.DeviceID = boardDeviceID
	}
	if cfg.Broker == nil && cfg.HTTP == nil && deps.Transport == nil {
		return nil, errors.New("config: broker: missing (or http)")
	}
	cfg.fillDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	device := cfg.DeviceID
	if device == AutoDeviceID {
		id, err := deps.DeviceID(cfg.DeviceIDPrefix)
		if err != nil {
			return nil, fmt.Errorf("device_id auto: %w", err)
		}
		device = id
	}
	if err := wire.ValidateDeviceID(device); err != nil {
		return nil, fmt.Errorf("device_id: %w", err)
	}
	if err := cfg.ReadSecrets(); err != nil {
		return nil, err
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	if deps.Rand == nil {
		var seed [32]byte
		_, _ = rand.Read(seed[:])
		deps.Rand = mrand.New(mrand.NewChaCha8(seed))
	}
	e := &Engine{
		cfg: cfg, log: deps.Logger.With("device", device), clk: deps.Clock,
		store:   &store{dir: cfg.StateDir, log: deps.Logger, uid: os.Geteuid()},
		unsaved: map[string]*savedToken{},
		boot:    deps.BootClock,
		health:  deps.OnHealth,
		rnd:     deps.Rand,
		device:  device,
		topics:  wire.NewTopics(cfg.TopicRoot),
		ready:   make(chan struct{}),
		wake:    make(chan struct{}, 1), results: make(chan fetchResult, 8),
		pushes: make(chan *wire.Reply, 8), syncs: make(chan chan struct{}),
		reqBase:  "r-" + hex.EncodeToString(rnd[:]) + "-",
		slots:    map[string]*slot{},
		attempts: map[string]*attempt{}, recent: map[string]*attempt{},
		subs: map[int]chan Event{},
	}
	for _, n := range cfg.Tokens {
		e.slots[n] = e.newSlot(n)
	}
	if len(cfg.Tokens) == 0 {
		e.discover = e.newSlot("")
	}
	e.tr = deps.Transport
	if e.tr == nil {
		var err error
		if cfg.Broker != nil {
			e.tr, err = newMQTT(&cfg, device, e.clk, e.log)
		} else {
			e.tr, err = newHTTPSource(cfg.HTTP, e.log)
		}
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

// check validates a Config after fillDefaults, naming each field by its
// config-file key: a Config built in Go gets the same checks as the file.
func (c *Config) check() error {
	var e errs
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"renew_before", c.RenewBefore}, {"renew_min_interval", c.RenewMinInterval},
		{"request_timeout", c.RequestTimeout}, {"backoff.initial", c.Backoff.Initial},
		{"backoff.max", c.Backoff.Max},
	} {
		if d.v <= 0 {
			e.add(d.key, "must be positive, got %v", d.v)
		}
	}
	if c.RenewBefore >= 24*time.Hour {
		e.add("renew_before", "%v is not under the 24 h token lifetime limit", c.RenewBefore)
	}
	if p := c.RenewWindow.problem(); p != "" {
		e.add("renew_window", "%s", p)
	}
	if c.Backoff.Max < c.Backoff.Initial {
		e.add("backoff.max", "%v is less than backoff.initial %v", c.Backoff.Max, c.Backoff.Initial)
	}
	if m := c.Backoff.Multiplier; m < 1 || m > 10 {
		e.add("backoff.multiplier", "%v is not between 1 and 10", m)
	}
	if j := c.Backoff.Jitter; j != NoJitter && (j < 0 || j >= 1) {
		e.add("backoff.jitter", "%v is not in [0, 1) (or NoJitter)", j)
	}
	if err := wire.ValidateRoot(c.TopicRoot); err != nil {
		e.add("topic_root", "%v", err)
	}
	seen := map[string]bool{}
	for i, n := range c.Tokens {
		if err := wire.ValidateName("token name", n); err != nil {
			e.add(fmt.Sprintf("tokens[%d]", i), "%v", err)
		} else if seen[n] {
			e.add(fmt.Sprintf("tokens[%d]", i), "%q is listed twice", n)
		}
		seen[n] = true
	}
	if c.Broker != nil && c.Broker.KeepAlive < time.Second {
		e.add("broker.keepalive", "%v is under 1s", c.Broker.KeepAlive)
	}
	if len(e) > 0 {
		return fmt.Errorf("config: %w", errors.Join(e...))
	}
	return nil
}

func (e *Engine) newSlot(name string) *slot {
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     e.cfg.Backoff.Initial,
		RandomizationFactor: e.cfg.Backoff.randomization(),
		Multiplier:          e.cfg.Backoff.Multiplier,
		MaxInterval:         e.cfg.Backoff.Max,
		MaxElapsedTime:      0, // never give up
		Stop:                backoff.Stop,
		Clock:               e.clk,
	}
	bo.Reset()
	return &slot{name: name, bo: bo, state: StateMissing}
}

// DeviceID is the device id the engine runs as (auto resolved).
func (e *Engine) DeviceID() string { return e.device }

// Ready is closed once the persisted tokens are loaded (and served).
func (e *Engine) Ready() <-chan struct{} { return e.ready }

// Run loads the persisted tokens, then keeps every token fresh until ctx
// ends. It returns nil after a clean shutdown.
func (e *Engine) Run(ctx context.Context) error {
	e.loadState()
	close(e.ready)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return e.tr.Run(gctx, TransportHooks{Connected: e.connected, Disconnected: e.disconnected,
			Unsolicited: e.unsolicited(gctx)})
	})
	g.Go(func() error { return e.loop(gctx) })
	err := g.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

// loadState serves the persisted tokens that are still valid. A state
// directory that cannot be used is no reason not to start: tokens are
// fetched and served from memory, and persisted once the directory can
// be written.
func (e *Engine) loadState() {
	e.persistOK = true
	saved, err := e.store.load(e.clk.Wall())
	if err != nil {
		e.persistFailed(err)
	}
	bootID, uptime, berr := e.boot()
	if berr != nil {
		e.log.Debug("no boot clock; persisted tokens aged by the wall clock", "err", berr)
	}
	now, wall := e.clk.Now(), e.clk.Wall()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, st := range saved {
		s := e.slots[st.Grant.Name]
		if s == nil && e.discover == nil {
			e.log.Info("persisted token is no longer configured; ignored", "token", st.Grant.Name)
			continue
		}
		if s == nil {
			// Without a tokens list, the persisted names are the granted
			// set; one whose token did not survive is asked for at boot.
			s = e.newSlot(st.Grant.Name)
			e.slots[s.name] = s
		}
		left, how := bootRemaining(st, bootID, uptime, wall)
		if left <= 0 {
			e.log.Info("persisted token not served", "token", st.Grant.Name, "why", how, "expires_at", st.Grant.ExpiresAt)
			continue
		}
		life := time.Duration(st.Grant.Lifetime()) * time.Second
		e.hold(s, &Token{Grant: st.Grant, ReceivedAt: now.Add(left - life)}, now)
		s.state = StateValid
		e.dirty = true
		e.log.Info("serving persisted token", "token", s.name, "kid", st.Grant.KID, "expires_in", left.Round(time.Second),
			"aged_by", how, "renew_in", s.tok.ReceivedAt.Add(s.renewAt).Sub(now).Round(time.Second))
		if e.discover != nil && e.discover.tok == nil {
			// The persisted names are the granted set: nothing is asked
			// for at boot. A name granted since is picked up by the next
			// renewal (a request for every granted token).
			e.discover.tok = s.tok
		}
	}
}

// hold makes tok the slot's current token and draws its renewal point
// (e.mu held, or before the loop starts).
func (e *Engine) hold(s *slot, tok *Token, now time.Time) {
	s.tok, s.warned = tok, false
	e.draw(s, now)
}

// draw draws the renewal point of the slot's token, as old as it is at
// now (e.mu held).
func (e *Engine) draw(s *slot, now time.Time) {
	life := time.Duration(s.tok.Lifetime()) * time.Second
	s.renewAt = drawRenewal(e.rnd.Float64(), e.cfg.RenewWindow, life, e.cfg.RenewBefore, now.Sub(s.tok.ReceivedAt))
}

// persist writes the tokens waiting to be persisted, at once while the
// state directory works, else every persistRetry. It returns when to try
// again (zero: nothing waits).
func (e *Engine) persist(saves []*savedToken, now time.Time) time.Time {
	for _, sv := range saves {
		e.unsaved[sv.Grant.Name] = sv
	}
	if len(e.unsaved) == 0 {
		return time.Time{}
	}
	if !e.persistOK && now.Before(e.retrySave) {
		return e.retrySave
	}
	names := make([]string, 0, len(e.unsaved))
	for n := range e.unsaved {
		names = append(names, n)
	}
	sort.Strings(names)
	var failed error
	for _, n := range names {
		if err := e.store.save(e.unsaved[n]); err != nil {
			failed = err
			continue
		}
		delete(e.unsaved, n)
	}
	if failed != nil {
		e.persistFailed(failed)
		e.retrySave = now.Add(persistRetry)
		return e.retrySave
	}
	if !e.persistOK {
		e.persistOK = true
		e.mu.Lock()
		e.stateErr = ""
		e.mu.Unlock()
		e.log.Info("state directory usable again; tokens persisted", "dir", e.cfg.StateDir)
	}
	return time.Time{}
}

// persistFailed records that tokens cannot be persisted: said once at
// Error level when it starts, at Debug level while it goes on.
func (e *Engine) persistFailed(err error) {
	msg := fmt.Sprintf("memory only: %v", err)
	e.mu.Lock()
	e.stateErr = msg
	e.mu.Unlock()
	if e.persistOK {
		e.log.Error("cannot persist tokens; serving them from memory, retrying", "dir", e.cfg.StateDir,
			"retry_every", persistRetry, "err", err)
	} else {
		e.log.Debug("still cannot persist tokens", "dir", e.cfg.StateDir, "err", err)
	}
	e.persistOK = false
}

// connected is called by the transport after each (re)connection: what
// is missing, failed while it was down, or has reached its will-expire
// point, is requested at once. A renewal that fell due while the broker
// was away, and still has time before its will-expire point, draws a new
// point in what is left (as a persisted token does at boot): after a
// broker outage the fleet's held renewals do not all go out as it
// reconnects.
func (e *Engine) connected() {
	now := e.clk.Now()
	e.mu.Lock()
	e.online = true
	for _, s := range e.allSlots() {
		// A refusal is not the broker's doing: it keeps its long wait.
		if s.failures > 0 && s.refused == nil {
			s.lastFail, s.wait = time.Time{}, 0
			s.bo.Reset()
		}
		if s != e.discover && s.tok != nil && s.refused == nil && s.inflight == "" && !s.warned &&
			e.decideSlot(s, now).State == StateRenewing {
			e.draw(s, now)
		}
	}
	e.mu.Unlock()
	e.poke()
}

// disconnected is called by the transport after a loss: requests wait
// for the next connection rather than fail (at boot, the first request
// waits for the first connection).
func (e *Engine) disconnected() {
	e.mu.Lock()
	e.online = false
	e.mu.Unlock()
	e.poke()
}

func (e *Engine) unsolicited(ctx context.Context) func(*wire.Reply) {
	return func(r *wire.Reply) {
		select {
		case e.pushes <- r:
		case <-ctx.Done():
		}
	}
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// loop is the engine's single goroutine: everything that changes a
// token's schedule happens here.
func (e *Engine) loop(ctx context.Context) error {
	timer := e.clk.NewTimer(time.Hour)
	defer timer.Stop()
	defer func() {
		e.mu.Lock()
		for _, a := range e.attempts {
			a.cancel()
		}
		e.mu.Unlock()
	}()
	for {
		next := e.step(ctx)
		d := time.Hour
		if !next.IsZero() {
			d = next.Sub(e.clk.Now())
		}
		timer.Stop()
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C():
		case <-e.wake:
		case r := <-e.results:
			e.handleResult(r)
		case r := <-e.pushes:
			e.handleUnsolicited(r)
		case ack := <-e.syncs:
			// What was queued before sync was called is handled, and the
			// next step runs, before the acknowledgement (select picks
			// among ready cases at random, so a queued push could
			// otherwise come after it).
			e.drainQueued()
			e.step(ctx)
			close(ack)
		}
	}
}

// drainQueued handles the results and pushes already queued.
func (e *Engine) drainQueued() {
	for {
		select {
		case r := <-e.results:
			e.handleResult(r)
		case r := <-e.pushes:
			e.handleUnsolicited(r)
		default:
			return
		}
	}
}

// sync makes the loop run one step at the current time and waits until it
// has (tests use it after moving the fake clock).
func (e *Engine) sync() {
	ack := make(chan struct{})
	e.syncs <- ack
	<-ack
}

func (e *Engine) allSlots() []*slot {
	out := make([]*slot, 0, len(e.slots)+1)
	if e.discover != nil {
		out = append(out, e.discover)
	}
	names := make([]string, 0, len(e.slots))
	for n := range e.slots {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, e.slots[n])
	}
	return out
}

func (e *Engine) decideSlot(s *slot, now time.Time) action {
	if s == e.discover {
		if s.tok != nil { // discovery done
			return action{State: StateValid}
		}
		return decide(now, time.Time{}, 0, 0, 0, s.lastFail, s.wait)
	}
	var recv time.Time
	var life time.Duration
	if s.tok != nil {
		recv, life = s.tok.ReceivedAt, time.Duration(s.tok.Lifetime())*time.Second
	}
	return decide(now, recv, life, e.cfg.RenewBefore, s.renewAt, s.lastFail, s.wait)
}

// step acts on everything due at the clock's now and returns when to wake
// next.
func (e *Engine) step(ctx context.Context) time.Time {
	now := e.clk.Now()
	e.mu.Lock()
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for id, a := range e.attempts {
		if !now.Before(a.deadline) {
			a.cancel()
			delete(e.attempts, id)
			e.failed(a, now, errNoReply)
		} else {
			earliest(a.deadline)
		}
	}
	// Tokens that fall due together share a request, except those asked
	// for alone (solo) since a shared request was refused: one bad name
	// must not hold the others back. Without a tokens list, the shared
	// request names none: the issuer answers with every token it grants,
	// so a name granted since the last one is picked up.
	var batch, solos []*slot
	all := e.discover != nil
	for _, s := range e.allSlots() {
		a := e.decideSlot(s, now)
		e.transition(s, a, now)
		earliest(a.Next)
		if (a.Request || s.forced) && s.inflight == "" {
			switch {
			case s.solo:
				solos = append(solos, s)
			default:
				batch = append(batch, s)
			}
		}
	}
	due := len(batch) + len(solos)
	held := due > 0 && !e.online
	if held && !e.held {
		e.log.Debug("requests wait for the broker connection", "tokens", due)
	}
	var expires time.Time // the earliest expiry a held request is to beat
	for _, s := range batch {
		if s.tok != nil && s.tok.Valid(now) && (expires.IsZero() || s.tok.Deadline().Before(expires)) {
			expires = s.tok.Deadline()
		}
	}
	e.held = held
	if due > 0 && !held {
		if len(batch) > 0 {
			e.send(ctx, batch, all, now)
		}
		for _, s := range solos {
			e.send(ctx, []*slot{s}, s == e.discover, now)
		}
		earliest(now.Add(e.cfg.RequestTimeout))
	}
	h := e.healthLocked(now)
	hChanged := !e.hSet || h != e.lastH
	e.lastH, e.hSet = h, true
	saves, dirty := e.saves, e.dirty
	e.saves, e.dirty = nil, false
	var st wire.DeviceStatus
	if dirty {
		st = e.deviceStatusLocked()
		st.At = e.clk.Wall().Unix() // when it changed, on the board's clock
	}
	e.mu.Unlock()

	if t := e.persist(saves, now); !t.IsZero() && (next.IsZero() || t.Before(next)) {
		next = t
	}
	if dirty {
		e.tr.Report(st)
	}
	if w, ok := e.tr.(RequestWaiter); ok && held {
		w.RequestHeld(expires)
	}
	if hChanged && e.health != nil {
		e.health(h)
	}
	return next
}

// transition records a slot's new state, and emits will_expire when the
// token reaches its will-expire point with no fresh token yet, and expired
// when it expires.
func (e *Engine) transition(s *slot, a action, now time.Time) {
	if s == e.discover {
		return
	}
	if s.tok == nil {
		s.state = a.State
		return
	}
	if a.WillExpire && !s.warned {
		s.warned = true
		e.log.Warn("token will expire and no fresh one has come; still renewing", "token", s.name,
			"expires_in", s.tok.ExpiresIn(now).Round(time.Second), "failures", s.failures)
		e.emit(Event{Kind: EventWillExpire, Name: s.name, Token: *s.tok, At: now})
	}
	if a.State == s.state {
		return
	}
	prev := s.state
	s.state = a.State
	switch a.State {
	case StateRenewing:
		e.log.Info("renewing token", "token", s.name, "expires_in", s.tok.ExpiresIn(now).Round(time.Second))
	case StateExpired:
		e.log.Warn("token expired before a fresh one arrived", "token", s.name, "previous_state", prev)
		e.emit(Event{Kind: EventExpired, Name: s.name, Token: *s.tok, At: now})
		e.dirty = true
	}
}

func (e *Engine) send(ctx context.Context, batch []*slot, all bool, now time.Time) {
	e.reqSeq++
	id := e.reqBase + strconv.FormatUint(e.reqSeq, 10)
	a := &attempt{id: id, seq: e.reqSeq, sentAt: now, deadline: now.Add(e.cfg.RequestTimeout)}
	req := wire.Request{V: wire.SchemaVersion, ID: id}
	for _, s := range batch {
		s.inflight, s.forced = id, false
		if s != e.discover {
			a.names = append(a.names, s.name)
		}
	}
	if !all {
		req.Tokens = a.names
	} else {
		a.names = nil
	}
	fctx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	e.attempts[id] = a
	e.remember(a)
	e.log.Debug("requesting tokens", "request", id, "tokens", req.Tokens)
	go func() {
		rep, err := e.tr.Fetch(fctx, req)
		select {
		case e.results <- fetchResult{id: id, reply: rep, err: err}:
		case <-ctx.Done():
		}
	}()
}

func (e *Engine) remember(a *attempt) {
	e.recent[a.id] = a
	e.order = append(e.order, a.id)
	if len(e.order) > recentRequests {
		delete(e.recent, e.order[0])
		e.order = e.order[1:]
	}
}

// slotsOf returns the slots an attempt covers.
func (e *Engine) slotsOf(a *attempt) []*slot {
	var out []*slot
	for _, s := range e.allSlots() {
		if s.inflight == a.id {
			out = append(out, s)
		}
	}
	return out
}

// failed ends an attempt that brought nothing: every slot it covered
// backs off as classify says. A refused request for several tokens is
// split: each is asked for alone at once, so that one name the issuer
// will not grant (a typo in tokens) does not hold the others back.
func (e *Engine) failed(a *attempt, now time.Time, err error) {
	slots := e.slotsOf(a)
	if class, _ := classify(err); class == classRefused && len(slots) > 1 {
		e.log.Info("issuer refused a request for several tokens; asking for each alone", "request", a.id,
			"tokens", len(slots), "err", err)
		for _, s := range slots {
			s.inflight, s.solo = "", true
			s.lastFail, s.wait = now, 0
		}
		return
	}
	for _, s := range slots {
		e.slotFailed(s, now, err)
	}
}

func (e *Engine) slotFailed(s *slot, now time.Time, err error) {
	s.inflight = ""
	s.failures++
	s.lastFail = now
	class, delay := classify(err)
	if class == classRefused {
		e.slotRefused(s, err, delay)
		return
	}
	s.wait = max(s.bo.NextBackOff(), delay)
	lvl := slog.LevelDebug
	// Warn on the 1st, 2nd, 4th, 8th… failure; not while the broker is
	// still being reached (at boot, after a loss): the reconnection
	// itself sends the request again.
	if s.failures&(s.failures-1) == 0 && !errors.Is(err, errNotConnected) {
		lvl = slog.LevelWarn
	}
	e.log.Log(context.Background(), lvl, "token request failed; retrying", "token", e.label(s),
		"failures", s.failures, "retry_in", s.wait.Round(time.Millisecond), "err", err)
}

// slotRefused backs a refused token off long (at least backoff.max):
// asking again soon cannot help until the policy or the config changes.
// It is said once at Error level, and shown in the status until the
// token is granted.
func (e *Engine) slotRefused(s *slot, err error, delay time.Duration) {
	s.wait = max(e.cfg.Backoff.Max, delay)
	var ie *IssuerError
	errors.As(err, &ie)
	first := s.refused == nil
	s.refused, s.solo = ie, true
	if first {
		e.dirty = true
		e.log.Error("issuer refuses the token; retrying rarely", "token", e.label(s), "code", ie.Code,
			"retry_in", s.wait.Round(time.Second), "err", err)
		return
	}
	e.log.Debug("token still refused", "token", e.label(s), "failures", s.failures,
		"retry_in", s.wait.Round(time.Second), "err", err)
}

// label names a slot in logs.
func (e *Engine) label(s *slot) string {
	if s == e.discover {
		return "(all granted)"
	}
	return s.name
}

func (e *Engine) slotOK(s *slot) {
	switch {
	case s.refused != nil:
		e.log.Info("token granted after a refusal", "token", e.label(s), "failures", s.failures)
		e.dirty = true
	case s.failures > 0:
		e.log.Info("token request succeeded after failures", "token", e.label(s), "failures", s.failures)
	}
	s.refused, s.solo = nil, false
	s.inflight, s.failures, s.lastFail, s.wait = "", 0, time.Time{}, 0
	s.bo.Reset()
}
