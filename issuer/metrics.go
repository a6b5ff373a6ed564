package issuer

import (
	"sync"

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
}

func newMetrics() *metrics {
	m := &metrics{registry: prometheus.NewRegistry(), seen: map[string]struct{}{}}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_issuer_requests_total",
		Help: "Token requests handled, by transport (mqtt, http) and result.",
	}, []string{"transport", "result"})
	m.signing = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "agora_issuer_signing_seconds",
		Help:    "Time to sign the tokens of one request.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10),
	})
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
}

// endpoint counts one HTTP API request.
func (m *metrics) endpoint(name, result string) {
	m.endpoints.WithLabelValues(name, result).Inc()
}
