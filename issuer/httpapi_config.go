package issuer

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"agoratokens/brokertls"
)

// Defaults of the HTTP token API.
const (
	// DefaultKeyRatePerMin and DefaultKeyRateBurst limit each API key: a
	// web backend serves many users through one key.
	DefaultKeyRatePerMin = 3000
	DefaultKeyRateBurst  = 500
	// DefaultHTTPExpire is a token's lifetime when the caller names none
	// (agora-token-service's default), capped by the grant's max ttl.
	DefaultHTTPExpire = time.Hour
	// DefaultAnonymousRatePerMin limits each anonymous client address.
	DefaultAnonymousRatePerMin = 600
	// envCORSAllowOrigin is agora-token-service's variable for the
	// allowed origins, read when http.cors_allow_origin is empty.
	envCORSAllowOrigin = "CORS_ALLOW_ORIGIN"
)

// AnonymousConfig is http.insecure_allow_anonymous: what a caller
// without an API key may mint. It exists so that unmodified seed clients
// can be pointed at a local issuer; never enable it on a reachable
// listener.
type AnonymousConfig struct {
	// Channels are the channel globs anonymous callers may ask for
	// (required).
	Channels []string `yaml:"channels"`
	// UIDs limits the identities, as an API key's --uids (empty: any).
	UIDs string `yaml:"uids"`
	// Services limits the services (default all four).
	Services []string `yaml:"services"`
	// MaxTTL caps the lifetimes (default 1h).
	MaxTTL time.Duration `yaml:"max_ttl"`
	// Rate limits each client address (default 600 a minute).
	Rate RateConfig `yaml:"rate"`
}

// fill sets the HTTP defaults and validates; listening says whether an
// HTTP server runs at all.
func (h *HTTPConfig) fill(listening bool) error {
	if h.KeyRate.PerMinute == 0 {
		h.KeyRate.PerMinute = DefaultKeyRatePerMin
	}
	if h.KeyRate.Burst == 0 {
		h.KeyRate.Burst = DefaultKeyRateBurst
	}
	if h.KeyRate.PerMinute < 0 || h.KeyRate.Burst < 0 {
		return fmt.Errorf("http.key_rate: negative numbers")
	}
	for i, o := range h.CORSAllowOrigin {
		if err := checkOrigin(o); err != nil {
			return fmt.Errorf("http.cors_allow_origin[%d]: %w", i, err)
		}
	}
	if (h.TLSCertFile == "") != (h.TLSKeyFile == "") {
		return fmt.Errorf("http: tls_cert_file and tls_key_file go together")
	}
	if h.TLSCertFile != "" && !listening {
		return fmt.Errorf("http.tls_cert_file: set, but listen is empty so no HTTP server would run")
	}
	if a := h.InsecureAllowAnonymous; a != nil {
		if !listening {
			return fmt.Errorf("http.insecure_allow_anonymous: set, but listen is empty so no HTTP server would run")
		}
		if len(a.Channels) == 0 {
			return fmt.Errorf("http.insecure_allow_anonymous.channels: missing; list the channel globs anonymous callers may use")
		}
		if a.MaxTTL == 0 {
			a.MaxTTL = time.Hour
		}
		if a.Rate.PerMinute == 0 {
			a.Rate.PerMinute = DefaultAnonymousRatePerMin
		}
		if a.Rate.Burst == 0 {
			a.Rate.Burst = max(1, a.Rate.PerMinute/6)
		}
		if _, err := a.grant(); err != nil {
			return err
		}
	}
	return nil
}

func (a *AnonymousConfig) grant() (*keyGrant, error) {
	ttl := ""
	if a.MaxTTL != 0 {
		ttl = a.MaxTTL.String()
	}
	return newKeyGrant("http.insecure_allow_anonymous.", a.Channels, a.UIDs, a.Services, ttl)
}

// checkOrigin accepts "*" or scheme://host[:port].
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	scheme, host, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") || host == "" || strings.ContainsAny(host, "/?# ") {
		return fmt.Errorf("%q is not * or an origin like https://app.example.com", o)
	}
	return nil
}

// httpState is the part of a reload's state that only HTTP uses.
type httpState struct {
	origins   []string  // allowed CORS origins; "*" any
	anonymous *keyGrant // nil: a key is required
	anonRate  RateConfig
	cert      *tls.Certificate // nil: plain HTTP
	anonSeen  sync.Once        // warns at the first anonymous request
}

// loadHTTPState reads what the HTTP API needs beyond the keys: the CORS
// origins (config, else the environment), the anonymous grant and the
// TLS certificate.
func loadHTTPState(cfg *Config) (*httpState, error) {
	h := &httpState{origins: cfg.HTTP.CORSAllowOrigin}
	if len(h.origins) == 0 {
		for _, o := range strings.Split(os.Getenv(envCORSAllowOrigin), ",") {
			if o = strings.TrimSpace(o); o == "" {
				continue
			}
			if err := checkOrigin(o); err != nil {
				return nil, fmt.Errorf("$%s: %w", envCORSAllowOrigin, err)
			}
			h.origins = append(h.origins, o)
		}
	}
	if a := cfg.HTTP.InsecureAllowAnonymous; a != nil {
		g, err := a.grant()
		if err != nil {
			return nil, err
		}
		h.anonymous, h.anonRate = g, a.Rate
	}
	if cfg.HTTP.TLSCertFile != "" {
		pair, err := brokertls.KeyPair("http.tls_cert_file", cfg.HTTP.TLSCertFile, "http.tls_key_file", cfg.HTTP.TLSKeyFile)
		if err != nil {
			return nil, err
		}
		h.cert = &pair
	}
	return h, nil
}

// allowOrigin returns the Access-Control-Allow-Origin value for origin,
// "" when it is not allowed.
func (h *httpState) allowOrigin(origin string) string {
	if origin == "" {
		return ""
	}
	for _, o := range h.origins {
		if o == "*" {
			return "*"
		}
		if o == origin {
			return origin
		}
	}
	return ""
}
