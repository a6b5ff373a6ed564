// Package fleetsim simulates a fleet of devices for capacity planning:
// N devices, each with its own MQTT connection and credentials, ask the
// issuer for their tokens at once (a fleet booting after an outage) or
// at a steady rate, and every reply is checked. The result gives
// throughput, latency percentiles, error codes and lost requests.
package fleetsim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/clock"
	"agoratokens/wire"
)

// Config configures a simulation.
type Config struct {
	// BrokerURL is tcp://host:port or ssl://host:port.
	BrokerURL string
	// TLS configures an ssl:// broker (nil: system roots).
	TLS *tls.Config
	// Devices is the fleet size.
	Devices int
	// Prefix starts every device id ("dev-sim-" by default, which the
	// policy of `agora-token-issuer init` grants).
	Prefix string
	// Seed derives the devices' secrets (see Secret).
	Seed []byte
	// TopicRoot defaults to wire.DefaultRoot.
	TopicRoot string
	// Tokens names the tokens each device asks for; empty asks for all.
	Tokens []string
	// Rate is requests a second; 0 sends every request at once.
	Rate float64
	// RequestOnConnect has each device ask as soon as it is connected
	// and subscribed, as an agent does, instead of all at once once the
	// whole fleet is connected (not with Rate). The requests then arrive
	// at the pace the broker takes logins.
	RequestOnConnect bool
	// Timeout is how long to wait for the last reply (default 30s), and
	// bounds each login and subscription.
	Timeout time.Duration
	// Retries is how many more times a device whose login or
	// subscription failed tries again, as an agent does: after RetryWait,
	// doubling per failure up to a minute, each ±20 % (the agent's
	// default backoff), a refused subscription on the same connection,
	// anything else on a new one. 0 (the default): a device that fails
	// once counts as failed.
	Retries int
	// RetryWait is the first retry's delay (default 1s, the agent's
	// backoff.initial).
	RetryWait time.Duration
	// ConnectParallel bounds connections being set up at once (64;
	// mosquitto 2.0 listens with a backlog of 100, and a deeper burst of
	// connects costs SYN retransmits of a second each).
	ConnectParallel int
	// AppID, when set, must be every token's app id.
	AppID string
	// Certificates, when set, must verify every token.
	Certificates []string
	// Logger gets progress and per-device failures (nil: discarded).
	Logger *slog.Logger
	// Clock times the run, paces the requests and ends the wait for
	// replies (nil: the real clock). Network deadlines use real time.
	Clock clock.Clock
	// Served, when set, is called once the wait for replies is over
	// (every reply in, or the timeout), while the fleet is still
	// connected; Run goes on, disconnecting the devices, when it returns.
	// A benchmark reads its CPU counters there, so that what the brokers
	// spend closing the fleet's sessions is not counted as the storm's.
	Served func()
}

// Result is what a simulation measured.
type Result struct {
	Devices       int
	Connected     int
	ConnectFailed int           // devices that could not connect (after their retries)
	Retried       int           // devices that connected only after retrying
	ConnectTime   time.Duration // until every device was connected and subscribed
	Requests      int
	Replies       int            // replies with tokens that passed every check
	Tokens        int            // tokens in those replies
	Errors        map[string]int // error replies by code, and "bad_reply" for replies failing a check
	Lost          int            // requests with no reply by the timeout
	Dropped       int            // connections the broker closed before the end of the wait, with their reply or before it
	Elapsed       time.Duration  // first request sent to last reply
	Total         time.Duration  // first connection attempt to last reply
	Latencies     []time.Duration
}

// Percentile returns the p-th (0–100) latency percentile (0 if none).
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.Latencies)
	slices.Sort(s)
	i := int(p / 100 * float64(len(s)-1))
	return s[min(max(i, 0), len(s)-1)]
}

// OK reports whether every device connected and every request got a
// reply that passed its checks.
func (r *Result) OK() bool {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return r.ConnectFailed == 0 && r.Lost == 0 && n == 0 && r.Replies == r.Devices && r.Dropped == 0
}

// Print writes the result for an operator.
func (r *Result) Print(w io.Writer) {
	errs := 0
	for _, v := range r.Errors {
		errs += v
	}
	fmt.Fprintf(w, "devices     %d (connected %d, of which after a retry %d, failed %d, in %v)\n", r.Devices, r.Connected, r.Retried,
		r.ConnectFailed, r.ConnectTime.Round(time.Millisecond))
	fmt.Fprintf(w, "requests    %d  replies %d  tokens %d  errors %d  lost %d\n", r.Requests, r.Replies, r.Tokens, errs, r.Lost)
	if r.Dropped > 0 {
		fmt.Fprintf(w, "dropped     %d connections closed by the broker during the run\n", r.Dropped)
	}
	if errs > 0 {
		codes := make([]string, 0, len(r.Errors))
		for c := range r.Errors {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		for _, c := range codes {
			fmt.Fprintf(w, "  error %-16s %d\n", c, r.Errors[c])
		}
	}
	if r.Elapsed > 0 {
		secs := r.Elapsed.Seconds()
		fmt.Fprintf(w, "served in   %v  (%.0f replies/s, %.0f tokens/s)\n", r.Elapsed.Round(time.Millisecond),
			float64(r.Replies)/secs, float64(r.Tokens)/secs)
	}
	if r.Total > 0 {
		fmt.Fprintf(w, "total       %v  (first connection attempt to last reply)\n", r.Total.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "latency     p50 %v  p99 %v  max %v\n", r.Percentile(50).Round(time.Millisecond),
		r.Percentile(99).Round(time.Millisecond), r.Percentile(100).Round(time.Millisecond))
}

// Sim is a configured simulation.
type Sim struct {
	cfg    Config
	topics wire.Topics
	log    *slog.Logger
	clk    clock.Clock
}

// New validates cfg and fills defaults.
func New(cfg Config) (*Sim, error) {
	switch {
	case cfg.BrokerURL == "":
		return nil, errors.New("broker URL is not set")
	case cfg.Devices < 1:
		return nil, fmt.Errorf("devices: %d, want at least 1", cfg.Devices)
	case len(cfg.Seed) == 0:
		return nil, errors.New("seed is not set (the devices' secrets derive from it)")
	case cfg.Rate < 0:
		return nil, fmt.Errorf("rate: %v is negative", cfg.Rate)
	case cfg.Retries < 0:
		return nil, fmt.Errorf("retries: %d is negative", cfg.Retries)
	case cfg.RequestOnConnect && cfg.Rate > 0:
		return nil, errors.New("rate: a fleet asking on connect is paced by its logins, not by a rate")
	}
	if _, err := parseBrokerURL(cfg.BrokerURL); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "dev-sim-"
	}
	if err := wire.ValidateDeviceID(DeviceName(cfg.Prefix, cfg.Devices-1)); err != nil {
		return nil, fmt.Errorf("prefix: %w", err)
	}
	for _, n := range cfg.Tokens {
		if err := wire.ValidateName("token name", n); err != nil {
			return nil, err
		}
	}
	if cfg.TopicRoot == "" {
		cfg.TopicRoot = wire.DefaultRoot
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = time.Second
	}
	if cfg.ConnectParallel <= 0 {
		cfg.ConnectParallel = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	return &Sim{cfg: cfg, topics: wire.NewTopics(cfg.TopicRoot), log: cfg.Logger, clk: cfg.Clock}, nil
}

// device is one simulated device.
type device struct {
	name   string
	conn   *mqttConn // nil until connected, and when connecting failed
	reqID  string
	sentAt atomic.Int64 // UnixNano; 0 before the request
	// Under run.mu: the first message after the request, and when.
	reply   []byte
	replyAt time.Time
}

// run tracks replies across devices.
type run struct {
	sim       *Sim
	mu        sync.Mutex
	over      bool // the wait is over: later messages are not counted
	latencies []time.Duration
	lastReply time.Time
	dropped   int // connections closed before the wait was over
	pending   atomic.Int64
	allDone   chan struct{}
	doneOnce  sync.Once
}

// settled counts one device off: replied, or out of the run (it could
// not connect, or its request could not be sent).
func (r *run) settled() {
	if r.pending.Add(-1) == 0 {
		r.doneOnce.Do(func() { close(r.allDone) })
	}
}

// Run connects the fleet, sends the requests, waits for the replies (or
// the timeout), disconnects, and then checks every reply. The checks
// (JSON, token parsing, signatures) run once the clock has stopped: on
// a real fleet each device checks its own reply on its own CPU, and here
// they would take cores from the broker and the issuer being measured.
// An error means the simulation could not run at all; failures of
// devices are in the Result.
func (s *Sim) Run(ctx context.Context) (*Result, error) {
	n := s.cfg.Devices
	r := &run{sim: s, allDone: make(chan struct{}), latencies: make([]time.Duration, 0, n)}
	devs := make([]*device, n)
	for i := range devs {
		devs[i] = &device{name: DeviceName(s.cfg.Prefix, i), reqID: "sim-" + strconv.Itoa(i)}
	}
	res := &Result{Devices: n, Errors: map[string]int{}}

	// ConnectParallel workers connect the devices; each connected device
	// then has a goroutine of its own reading its messages until the
	// connection closes at the end of the run.
	start := s.clk.Now()
	onConnect := s.cfg.RequestOnConnect
	if onConnect {
		r.pending.Store(int64(n))
	}
	var failed, retried, sent atomic.Int64
	var readers sync.WaitGroup
	defer func() {
		s.disconnect(devs)
		readers.Wait()
	}()
	queue := make(chan *device)
	var workers sync.WaitGroup
	for range s.cfg.ConnectParallel {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for d := range queue {
				tries, err := s.connect(ctx, d)
				if tries > 1 && err == nil {
					retried.Add(1)
				}
				if err != nil {
					if failed.Add(1) <= 5 {
						s.log.Warn("device could not connect", "device", d.name, "attempts", tries, "error", err)
					}
					if onConnect {
						r.settled()
					}
					continue
				}
				readers.Add(1)
				go func() {
					defer readers.Done()
					err := d.conn.readLoop(func(payload []byte) { r.onMessage(d, payload) })
					r.mu.Lock()
					if !r.over {
						r.dropped++
						if d.reply == nil || r.dropped <= 5 {
							s.log.Warn("the broker closed a device's connection", "device", d.name, "replied", d.reply != nil, "error", err)
						}
					}
					r.mu.Unlock()
				}()
				if onConnect {
					sent.Add(1)
					if err := s.request(d); err != nil {
						r.settled()
					}
				}
			}
		}()
	}
	cancelled := feed(ctx, queue, devs)
	workers.Wait()
	if cancelled != nil {
		return nil, cancelled
	}
	res.ConnectTime = s.clk.Now().Sub(start)
	res.ConnectFailed = int(failed.Load())
	res.Retried = int(retried.Load())
	res.Connected = n - res.ConnectFailed
	s.log.Info("fleet connected", "devices", res.Connected, "after_retry", res.Retried, "failed", res.ConnectFailed, "took", res.ConnectTime)

	live := slices.DeleteFunc(slices.Clone(devs), func(d *device) bool { return d.conn == nil })
	first := start
	if onConnect {
		res.Requests = int(sent.Load())
	} else {
		r.pending.Store(int64(len(live)))
		if len(live) == 0 {
			r.doneOnce.Do(func() { close(r.allDone) })
		}
		first = s.clk.Now()
		if err := s.send(ctx, r, live); err != nil {
			return nil, err
		}
		res.Requests = len(live)
	}

	timer := s.clk.NewTimer(s.cfg.Timeout)
	defer timer.Stop()
	select {
	case <-r.allDone:
	case <-timer.C():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r.mu.Lock()
	r.over = true
	r.mu.Unlock()
	if s.cfg.Served != nil {
		s.cfg.Served()
	}
	r.mu.Lock()
	res.Dropped = r.dropped
	res.Latencies = slices.Clone(r.latencies)
	if !r.lastReply.IsZero() {
		res.Elapsed = r.lastReply.Sub(first)
		res.Total = r.lastReply.Sub(start)
	}
	r.mu.Unlock()
	for _, d := range live {
		if d.reply == nil {
			res.Lost++
			continue
		}
		code, tokens := s.check(d)
		if code != "" {
			res.Errors[code]++
			continue
		}
		res.Replies++
		res.Tokens += tokens
	}
	return res, nil
}

// connect logs one device in and subscribes it to its token topic,
// retrying as configured; it returns the attempts made.
func (s *Sim) connect(ctx context.Context, d *device) (int, error) {
	var c *mqttConn
	wait := s.cfg.RetryWait
	for attempt := 1; ; attempt++ {
		var err error
		if c == nil {
			if c, err = dialMQTT(s.cfg.BrokerURL, s.cfg.TLS, d.name, Secret(s.cfg.Seed, d.name), s.cfg.Timeout); err != nil {
				c, err = nil, fmt.Errorf("connect: %w", err)
			}
		}
		if c != nil {
			if err = c.subscribe(s.topics.Token(d.name), s.cfg.Timeout); err == nil {
				d.conn = c
				return attempt, nil
			}
			if !errors.Is(err, errSubscribeRefused) {
				c.close()
				c = nil
			}
			err = fmt.Errorf("subscribe: %w", err)
		}
		if attempt > s.cfg.Retries {
			if c != nil {
				c.close()
			}
			return attempt, err
		}
		// ±20 %, as the agent's backoff.
		jittered := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		t := s.clk.NewTimer(jittered) // a device's retry backoff, not a wait for a condition
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			if c != nil {
				c.close()
			}
			return attempt, err
		}
		wait = min(2*wait, time.Minute)
	}
}

// send publishes every device's request, at once or paced at the rate.
func (s *Sim) send(ctx context.Context, r *run, live []*device) error {
	start := s.clk.Now()
	for i, d := range live {
		if s.cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / s.cfg.Rate * float64(time.Second)))
			if wait := due.Sub(s.clk.Now()); wait > 0 {
				pace := s.clk.NewTimer(wait) // pacing the load, not waiting for a condition
				select {
				case <-pace.C():
				case <-ctx.Done():
					pace.Stop()
					return ctx.Err()
				}
			}
		}
		if err := s.request(d); err != nil {
			return err
		}
	}
	return nil
}

// request publishes a device's request. A request that could not be
// written is logged and counts as lost (or, on connect, settled); only
// an encoding error is returned.
func (s *Sim) request(d *device) error {
	payload, err := wire.Encode(wire.Request{V: wire.SchemaVersion, ID: d.reqID, Tokens: s.cfg.Tokens})
	if err != nil {
		return err
	}
	d.sentAt.Store(s.clk.Now().UnixNano())
	if err := d.conn.publish1(s.topics.Req(d.name), payload); err != nil {
		s.log.Warn("request not sent", "device", d.name, "error", err)
		if s.cfg.RequestOnConnect {
			return err
		}
	}
	return nil
}

// onMessage records the first message a device gets after its request
// (a message before it is a push, not this simulation's).
func (r *run) onMessage(d *device, payload []byte) {
	at := r.sim.clk.Now()
	sent := d.sentAt.Load()
	if sent == 0 {
		return
	}
	r.mu.Lock()
	if r.over || d.reply != nil {
		r.mu.Unlock()
		return
	}
	d.reply, d.replyAt = payload, at
	r.lastReply = at
	r.latencies = append(r.latencies, at.Sub(time.Unix(0, sent)))
	r.mu.Unlock()
	r.settled()
}

// check checks a device's reply: it returns the error code ("bad_reply"
// for a reply failing a check) or the number of good tokens.
func (s *Sim) check(d *device) (code string, tokens int) {
	reply, err := wire.DecodeReply(d.reply)
	switch {
	case err != nil:
		s.log.Debug("bad reply", "device", d.name, "error", err)
		return "bad_reply", 0
	case reply.ID != d.reqID:
		s.log.Debug("reply to another request", "device", d.name, "id", reply.ID)
		return "bad_reply", 0
	case reply.Error != nil:
		return reply.Error.Code, 0
	}
	if err := s.checkGrants(reply.Tokens); err != nil {
		s.log.Debug("bad token", "device", d.name, "error", err)
		return "bad_reply", 0
	}
	return "", len(reply.Tokens)
}

// checkGrants parses every token and checks its app id and signature
// when those are configured.
func (s *Sim) checkGrants(gs []wire.Grant) error {
	for _, g := range gs {
		t, err := accesstoken.Parse(g.Token)
		if err != nil {
			return fmt.Errorf("token %q: %w", g.Name, err)
		}
		if s.cfg.AppID != "" && t.AppID != s.cfg.AppID {
			return fmt.Errorf("token %q: app id %s, want %s", g.Name, t.AppID, s.cfg.AppID)
		}
		if len(s.cfg.Certificates) > 0 {
			if _, err := t.Verify(s.cfg.Certificates...); err != nil {
				return fmt.Errorf("token %q: %w", g.Name, err)
			}
		}
	}
	return nil
}

// disconnect closes every connection; their readers then stop.
func (s *Sim) disconnect(devs []*device) {
	for _, d := range devs {
		if d.conn != nil {
			d.conn.close()
		}
	}
}

// feed sends items to the workers' queue until ctx ends, then closes the
// queue; it returns ctx's error when ctx ended first.
func feed[T any](ctx context.Context, queue chan<- T, items []T) error {
	defer close(queue)
	for _, it := range items {
		select {
		case queue <- it:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
