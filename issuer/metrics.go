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
)

// metrics are the issuer's Prometheus metrics, on a registry of its own
// so that several services (tests, replicas in one process) never clash.
type metrics struct {
	registry    *prometheus.Registry
	requests    *prometheus.CounterVec
	signing     prometheus.Histogram
	devices     prometheus.GaugeFunc
	rateLimited prometheus.Counter
	reloads     *prometheus.CounterVec
	endpoints   *prometheus.CounterVec

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
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_issuer_reloads_total",
		Help: "Config reloads, by result (ok, error).",
	}, []string{"result"})
	m.endpoints = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agora_issuer_http_requests_total",
		Help: "HTTP API requests, by endpoint and result.",
	}, []string{"endpoint", "result"})
	m.registry.MustRegister(m.requests, m.signing, m.devices, m.rateLimited, m.reloads, m.endpoints,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// sawDevice records a device id for the devices-seen gauge.
func (m *metrics) sawDevice(device string) {
	m.mu.Lock()
	m.seen[device] = struct{}{}
	m.mu.Unlock()
}

// request counts one handled request.
func (m *metrics) request(transport, result string) {
	m.requests.WithLabelValues(transport, result).Inc()
	if result == resultRateLimited {
		m.rateLimited.Inc()
	}
}

// endpoint counts one HTTP API request.
func (m *metrics) endpoint(name, result string) {
	m.endpoints.WithLabelValues(name, result).Inc()
}
