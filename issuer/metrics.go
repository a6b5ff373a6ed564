package issuer

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Request results, the "result" label of agora_issuer_requests_total.
const (
	resultOK          = "ok"
	resultReplayed    = "replayed"
	resultForbidden   = "forbidden"
	resultInvalid     = "invalid_request"
	resultRateLimited = "rate_limited"
	resultUnavailable = "unavailable"
	// resultShed: refused because the request queue (the device's or
	// the issuer's) was full.
	resultShed = "shed"
)

// metrics are the issuer's Prometheus metrics, on a registry of its own
// so that several services (tests, replicas in one process) never clash.
type metrics struct {
	registry    *prometheus.Registry
	requests    *prometheus.CounterVec
	signing     prometheus.Histogram
	devices     prometheus.GaugeFunc
	rateLimited prometheus.Counter
	unanswered  *prometheus.CounterVec
	reloads     *prometheus.CounterVec
	endpoints   *prometheus.CounterVec

	// The counters of the MQTT hot path, looked up once: a flood is
	// counted message by message.
	mqtt                    map[string]prometheus.Counter
	unansweredRate, refusQd prometheus.Counter

	mu   sync.Mutex
	seen map[string]struct{}

	// recent keeps the last hour per second for the fleet page's charts.
	recent *recentRing
}

func newMetrics() *metrics {
	m := &metrics{registry: prometheus.NewRegistry(), seen: map[string]struct{}{}, recent: newRecentRing(time.Now)}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_issuer_requests_total",
		Help: "Token requests handled, by transport (mqtt, http) and result.",
	}, []string{"transport", "result"})
	m.signing = ringedHistogram{prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "agora_issuer_signing_seconds",
		Help:    "Time to sign the tokens of one request.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10),
	}), m.recent}
	m.devices = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agora_issuer_devices_seen",
		Help: "Distinct device ids that sent a request since start.",
	}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return float64(len(m.seen))
	})
	m.rateLimited = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "agora_issuer_rate_limited_total",
		Help: "Requests refused by the per-device rate limit.",
	})
	m.unanswered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_issuer_refusals_unanswered_total",
		Help: "Refused MQTT requests left without a reply to keep a flood cheap, by reason " +
			"(rate_limited: the device was told already in this retry window; refusal_queue: too many refusals waiting).",
	}, []string{"reason"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_issuer_reloads_total",
		Help: "Config reloads, by result (ok, error).",
	}, []string{"result"})
	m.mqtt = map[string]prometheus.Counter{}
	for _, r := range []string{resultOK, resultReplayed, resultForbidden, resultInvalid, resultRateLimited, resultUnavailable, resultShed} {
		m.mqtt[r] = m.requests.WithLabelValues("mqtt", r)
	}
	m.unansweredRate = m.unanswered.WithLabelValues("rate_limited")
	m.refusQd = m.unanswered.WithLabelValues("refusal_queue")
	m.endpoints = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_issuer_http_requests_total",
		Help: "HTTP API requests, by endpoint and result.",
	}, []string{"endpoint", "result"})
	m.registry.MustRegister(m.requests, m.signing, m.devices, m.rateLimited, m.unanswered, m.reloads, m.endpoints,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// watchQueue exports the requests in flight as a gauge.
func (m *metrics) watchQueue(inFlight func() int) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agora_issuer_requests_in_flight",
		Help: "MQTT requests taken and not yet answered (queued, being handled, or awaiting their reply's PUBACK).",
	}, func() float64 { return float64(inFlight()) }))
}

// sawDevice records a device id for the devices-seen gauge.
func (m *metrics) sawDevice(device string) {
	m.mu.Lock()
	m.seen[device] = struct{}{}
	m.mu.Unlock()
}

// request counts one handled request.
func (m *metrics) request(transport, result string) {
	if c, ok := m.mqtt[result]; ok && transport == "mqtt" {
		c.Inc()
	} else {
		m.requests.WithLabelValues(transport, result).Inc()
	}
	if result == resultRateLimited {
		m.rateLimited.Inc()
	}
	m.recent.request()
}

// ringedHistogram is the signing histogram that also feeds the ring.
type ringedHistogram struct {
	prometheus.Histogram
	ring *recentRing
}

func (h ringedHistogram) Observe(v float64) {
	h.Histogram.Observe(v)
	h.ring.latency(v)
}

// The recent ring: per second of the last hour, the requests handled and
// a coarse histogram of signing latency (buckets a factor sqrt(2) wide
// from 1 µs; the last one takes everything slower), so the fleet page can
// chart requests per second and p99 latency without a Prometheus server.
// Its memory is fixed: ringSeconds slots of a few hundred bytes.
const (
	ringSeconds    = 3600
	latencyBuckets = 40
)

type ringSlot struct {
	sec      int64
	requests uint32
	lat      [latencyBuckets]uint32
}

type recentRing struct {
	now   func() time.Time
	mu    sync.Mutex
	slots [ringSeconds]ringSlot
}

func newRecentRing(now func() time.Time) *recentRing { return &recentRing{now: now} }

// slotLocked returns the slot of second sec, emptied if it held an older
// second.
func (r *recentRing) slotLocked(sec int64) *ringSlot {
	s := &r.slots[uint64(sec)%ringSeconds]
	if s.sec != sec {
		*s = ringSlot{sec: sec}
	}
	return s
}

func (r *recentRing) request() {
	sec := r.now().Unix()
	r.mu.Lock()
	r.slotLocked(sec).requests++
	r.mu.Unlock()
}

func (r *recentRing) latency(seconds float64) {
	sec := r.now().Unix()
	r.mu.Lock()
	r.slotLocked(sec).lat[latencyBucket(seconds)]++
	r.mu.Unlock()
}

// latencyBucket is the bucket of a latency: i holds values up to
// latencyBound(i).
func latencyBucket(seconds float64) int {
	us := seconds * 1e6
	if !(us > 1) {
		return 0
	}
	i := int(math.Ceil(2 * math.Log2(us)))
	return min(max(i, 0), latencyBuckets-1)
}

// latencyBound is the upper bound of bucket i, in seconds.
func latencyBound(i int) float64 { return math.Pow(2, float64(i)/2) * 1e-6 }

// RecentPoint is one point of the fleet page's charts: the step of
// seconds ending at T (unix seconds), its mean requests per second and
// the 99th percentile of signing latency (seconds, the upper bound of its
// bucket; 0 when nothing was signed).
type RecentPoint struct {
	T        int64   `json:"t"`
	Requests float64 `json:"rps"`
	P99      float64 `json:"p99"`
}

// series returns the last hour in points of step seconds, oldest first.
// The current second, still counting, is left out.
func (r *recentRing) series(step int) []RecentPoint {
	if step <= 0 || step > ringSeconds {
		step = 1
	}
	end := r.now().Unix() // exclusive
	n := ringSeconds / step
	out := make([]RecentPoint, 0, n)
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := n - 1; p >= 0; p-- {
		hi := end - int64(p*step) // exclusive
		var reqs uint64
		var lat [latencyBuckets]uint64
		var signed uint64
		for sec := hi - int64(step); sec < hi; sec++ {
			s := &r.slots[uint64(sec)%ringSeconds]
			if s.sec != sec {
				continue
			}
			reqs += uint64(s.requests)
			for i, c := range s.lat {
				lat[i] += uint64(c)
				signed += uint64(c)
			}
		}
		pt := RecentPoint{T: hi - 1, Requests: float64(reqs) / float64(step)}
		if signed > 0 {
			rank := (signed*99 + 99) / 100 // ceil(0.99 n)
			var acc uint64
			for i, c := range lat {
				acc += c
				if acc >= rank {
					pt.P99 = latencyBound(i)
					break
				}
			}
		}
		out = append(out, pt)
	}
	return out
}

// endpoint counts one HTTP API request.
func (m *metrics) endpoint(name, result string) {
	m.endpoints.WithLabelValues(name, result).Inc()
}
