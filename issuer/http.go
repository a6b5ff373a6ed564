package issuer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"agoratokens/wire"
)

// serveHTTP listens on addr (synchronously, so a taken port fails Run at
// once) and serves Handler in g until ctx ends. With http.tls_cert_file
// it speaks HTTPS, taking the certificate from the state in force, so a
// reload replaces it for new connections.
func (s *Service) serveHTTP(ctx context.Context, g *errgroup.Group, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s.httpAddr.Store(l.Addr().String())
	st := s.state.Load()
	tlsOn := st.http.cert != nil
	if tlsOn {
		l = tls.NewListener(l, &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				if c := s.state.Load().http.cert; c != nil {
					return c, nil
				}
				return nil, errors.New("no certificate: http.tls_cert_file was removed; restart to serve plain HTTP")
			},
		})
	}
	front := s.newFront(l, s.Handler())
	g.Go(func() error {
		if err := front.serve(); err != nil {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return front.stop(sctx)
	})
	if a := st.cfg.HTTP.InsecureAllowAnonymous; a != nil {
		s.log.Warn("INSECURE: http.insecure_allow_anonymous is set: anyone who reaches this listener can mint tokens "+
			"without an API key; use it for local development only",
			"addr", l.Addr().String(), "channels", a.Channels, "max_ttl", a.MaxTTL.String())
	}
	s.log.Info("http listening", "addr", l.Addr().String(), "tls", tlsOn,
		"token_api", st.keys != nil || st.http.anonymous != nil, "cors_origins", len(st.http.origins))
	return nil
}

// HTTPAddr is the address the HTTP server listens on once Run started it
// ("" without one).
func (s *Service) HTTPAddr() string {
	a, _ := s.httpAddr.Load().(string)
	return a
}

// Handler serves /healthz, /readyz, /metrics, the fleet page (/fleet/,
// fleetpage.go) and, with API keys (or anonymous access) configured, the
// token API: GET /v1/tokens (the policy, for principal keys) and the seed
// token servers' endpoints (httpapi_compat.go), all behind CORS.
// docs/http-api.md and docs/fleet-page.md have the shapes.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "not ready: broker not connected or not subscribed", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/tokens", s.api("v1_tokens", v1Tokens))
	s.compatRoutes(mux)
	s.newFleetPage().register(mux) // /fleet/ (fleetpage.go)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.endpoint("unknown", codeNotFound)
		writeAPIError(w, &apiError{status: http.StatusNotFound, code: codeNotFound,
			message: "no such endpoint: " + r.Method + " " + clip(r.URL.Path)})
	})
	return s.cors(mux)
}

// cors applies agora-token-service's CORS semantics: an allowed Origin
// is echoed (or "*" when any is allowed), a preflight OPTIONS is
// answered here, and other origins get no allow-origin header (a
// preflight from them is refused with 403).
func (s *Service) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allow := s.state.Load().http.allowOrigin(origin)
		h := w.Header()
		if origin != "" {
			h.Add("Vary", "Origin")
		}
		if allow != "" {
			h.Set("Access-Control-Allow-Origin", allow)
			h.Set("Access-Control-Expose-Headers", "Retry-After")
		}
		if r.Method != http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		if origin != "" && allow == "" {
			s.metrics.endpoint("preflight", resultForbidden)
			writeAPIError(w, refused("origin %q is not allowed (http.cors_allow_origin)", clip(origin)))
			return
		}
		s.metrics.endpoint("preflight", resultOK)
		h.Set("Allow", "GET, POST, OPTIONS")
		if allow != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func statusOf(r *wire.Reply) int {
	if r.Error == nil {
		return http.StatusOK
	}
	switch r.Error.Code {
	case wire.CodeForbidden:
		return http.StatusForbidden
	case wire.CodeInvalidRequest:
		return http.StatusBadRequest
	case wire.CodeRateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
