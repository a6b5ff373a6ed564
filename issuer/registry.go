package issuer

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"agoratokens/wire"
)

// DefaultMaxDevices bounds the fleet registry.
const DefaultMaxDevices = 100_000

// DeviceRecord is what the fleet registry knows of one device, from its
// retained status: never a token.
type DeviceRecord struct {
	ID      string             `json:"device"`
	Online  bool               `json:"online"`
	Agent   string             `json:"agent,omitempty"`
	Tokens  []wire.TokenStatus `json:"tokens"`
	Refused []wire.Refusal     `json:"refused,omitempty"`
	// At is when the device says its status last changed (unix seconds,
	// 0 when its agent does not say).
	At int64 `json:"at,omitempty"`
	// Seen is when this registry received the status.
	Seen time.Time `json:"seen"`
}

// KIDs returns the distinct kids of the record's tokens, sorted.
func (d *DeviceRecord) KIDs() []string {
	var out []string
	for _, t := range d.Tokens {
		if !slices.Contains(out, t.KID) {
			out = append(out, t.KID)
		}
	}
	slices.Sort(out)
	return out
}

// HoldsOther reports whether the device holds a token signed with a kid
// other than kid.
func (d *DeviceRecord) HoldsOther(kid string) bool {
	for _, t := range d.Tokens {
		if t.KID != kid {
			return true
		}
	}
	return false
}

// EarliestExpiry is the earliest expiry of the record's tokens (0 when
// it holds none).
func (d *DeviceRecord) EarliestExpiry() int64 {
	var e int64
	for _, t := range d.Tokens {
		if e == 0 || t.ExpiresAt < e {
			e = t.ExpiresAt
		}
	}
	return e
}

// Registry is the fleet as the devices' retained statuses describe it.
// Every issuer replica (and the fleet command) builds the same one from
// the broker, so it survives restarts and needs no shared store. It
// holds at most Max devices; statuses beyond that, and malformed ones,
// are counted and logged (rate-limited), never fatal.
type Registry struct {
	topics wire.Topics
	max    int
	log    *slog.Logger
	now    func() time.Time

	mu      sync.RWMutex
	devices map[string]*DeviceRecord
	next    chan struct{} // closed at the next change

	malformed atomic.Int64
	overflow  atomic.Int64
	logs      rateLog

	// changed, when set, is called (outside the lock) with each record
	// that a status added or changed.
	changed func(DeviceRecord)
}

// NewRegistry returns an empty registry for the topics under root,
// holding at most max devices (0: DefaultMaxDevices).
func NewRegistry(topics wire.Topics, max int, log *slog.Logger, now func() time.Time) *Registry {
	if max <= 0 {
		max = DefaultMaxDevices
	}
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	return &Registry{topics: topics, max: max, log: log, now: now,
		devices: map[string]*DeviceRecord{}, next: make(chan struct{}), logs: rateLog{every: 10 * time.Second, now: now}}
}

// Observe takes one message from the status filter. An empty payload (a
// retained status cleared) forgets the device. It reports whether the
// message was taken.
func (r *Registry) Observe(topic string, payload []byte) bool {
	id, err := r.topics.DeviceFromStatus(topic)
	if err != nil {
		r.bad("ignoring a status on a malformed topic", "err", err)
		return false
	}
	if len(payload) == 0 {
		r.mu.Lock()
		delete(r.devices, id)
		r.signalLocked()
		r.mu.Unlock()
		return true
	}
	var st wire.DeviceStatus
	if err := wire.Decode(payload, &st); err != nil {
		r.bad("ignoring a malformed device status", "device", id, "err", err)
		return false
	}
	if st.State != wire.StateOnline && st.State != wire.StateOffline {
		r.bad("ignoring a device status with an unknown state", "device", id, "state", truncate(st.State))
		return false
	}
	if len(st.Tokens) > wire.MaxRequestTokens {
		r.bad("ignoring a device status with too many tokens", "device", id, "tokens", len(st.Tokens))
		return false
	}
	for _, t := range st.Tokens {
		if wire.ValidateName("token name", t.Name) != nil || (t.KID != "" && wire.ValidateName("kid", t.KID) != nil) {
			r.bad("ignoring a device status with a malformed token entry", "device", id)
			return false
		}
	}
	rec := &DeviceRecord{ID: id, Online: st.State == wire.StateOnline, Agent: truncate(st.Agent),
		Tokens: st.Tokens, At: st.At, Seen: r.now()}
	for i, f := range st.Refused {
		if i == maxRefusals {
			break
		}
		rec.Refused = append(rec.Refused, wire.Refusal{Name: truncate(f.Name), Code: truncate(f.Code),
			Message: truncate(f.Message), At: f.At})
	}
	if rec.Tokens == nil {
		rec.Tokens = []wire.TokenStatus{}
	}
	r.mu.Lock()
	prev, known := r.devices[id]
	if !known && len(r.devices) >= r.max {
		r.mu.Unlock()
		r.overflow.Add(1)
		if ok, n := r.logs.allow(); ok {
			r.log.Warn("fleet registry full; ignoring a new device's status (raise the limit)",
				"device", id, "max", r.max, "suppressed", n)
		}
		return false
	}
	// An offline last will carries no tokens: keep what the device held,
	// since those tokens may still be live.
	if known && !rec.Online && len(st.Tokens) == 0 {
		rec.Tokens = prev.Tokens
	}
	r.devices[id] = rec
	r.signalLocked()
	cb := r.changed
	r.mu.Unlock()
	if cb != nil {
		cb(*rec)
	}
	return true
}

func (r *Registry) bad(msg string, args ...any) {
	r.malformed.Add(1)
	if ok, n := r.logs.allow(); ok {
		r.log.Warn(msg, append(args, "suppressed", n)...)
	}
}

func (r *Registry) signalLocked() {
	close(r.next)
	r.next = make(chan struct{})
}

// Changed returns a channel closed at the registry's next change.
func (r *Registry) Changed() <-chan struct{} {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.next
}

// Len is the number of devices known.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.devices)
}

// Malformed is the number of statuses ignored as malformed.
func (r *Registry) Malformed() int64 { return r.malformed.Load() }

// Overflow is the number of statuses ignored because the registry was
// full.
func (r *Registry) Overflow() int64 { return r.overflow.Load() }

// Get returns one device's record.
func (r *Registry) Get(id string) (DeviceRecord, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.devices[id]
	if !ok {
		return DeviceRecord{}, false
	}
	return *d, true
}

// Snapshot returns every record, sorted by device id.
func (r *Registry) Snapshot() []DeviceRecord {
	r.mu.RLock()
	out := make([]DeviceRecord, 0, len(r.devices))
	for _, d := range r.devices {
		out = append(out, *d)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b DeviceRecord) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// truncate shortens a string from the network for keeping and logging.
// maxRefusals bounds the refusals kept per device: a status could list
// any number.
const maxRefusals = 16

func truncate(s string) string {
	if len(s) > 128 {
		return s[:128] + "…"
	}
	return s
}

// rateLog lets one log line through every period and counts the rest.
type rateLog struct {
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	last    time.Time
	dropped int
}

// allow reports whether to log now, and how many lines were dropped
// since the last one logged.
func (l *rateLog) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.dropped++
		return false, 0
	}
	l.last = now
	n := l.dropped
	l.dropped = 0
	return true, n
}
