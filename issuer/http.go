package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"agoratokens/accesstoken"
	"agoratokens/wire"
)

// serveHTTP listens on addr (synchronously, so a taken port fails Run at
// once) and serves Handler in g until ctx ends.
func (s *Service) serveHTTP(ctx context.Context, g *errgroup.Group, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s.httpAddr.Store(l.Addr().String())
	// Requests' contexts end with ctx: the fleet page's event streams
	// would otherwise hold Shutdown up.
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	g.Go(func() error {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	s.log.Info("http listening", "addr", l.Addr().String(), "token_api", s.state.Load().keys != nil)
	return nil
}

// HTTPAddr is the address the HTTP server listens on once Run started it
// ("" without one).
func (s *Service) HTTPAddr() string {
	a, _ := s.httpAddr.Load().(string)
	return a
}

// Handler serves /healthz, /readyz, /metrics, the fleet page (/fleet/,
// for API keys) and, with API keys configured, the token API:
//
//	GET /v1/tokens?names=video,signal               → wire.Reply
//	GET /rtc/{channel}/{role}/{uid|userAccount}/{uid}/?expiry=S → {"rtcToken": …}
//	GET /rtm/{uid}/?expiry=S                        → {"rtmToken": …}
//
// The last two are the classic token-server endpoints; unlike those, the
// caller needs a bearer API key and gets only what the policy grants the
// key's principal.
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
	mux.HandleFunc("GET /v1/tokens", s.authed(s.handleTokens))
	rtc := s.authed(s.handleRTC)
	mux.HandleFunc("GET /rtc/{channel}/{role}/{tokentype}/{uid}/{$}", rtc)
	mux.HandleFunc("GET /rtc/{channel}/{role}/{tokentype}/{uid}", rtc)
	rtm := s.authed(s.handleRTM)
	mux.HandleFunc("GET /rtm/{uid}/{$}", rtm)
	mux.HandleFunc("GET /rtm/{uid}", rtm)
	s.newFleetPage().register(mux) // /fleet/ (fleetpage.go)
	return mux
}

// authed checks the bearer key and the principal's rate limit.
func (s *Service) authed(h func(http.ResponseWriter, *http.Request, *state, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st := s.state.Load()
		if st.keys == nil {
			httpError(w, http.StatusNotFound, wire.CodeForbidden, "the token API is off (no http.api_keys_file)", 0)
			return
		}
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		principal, found := st.keys.lookup(strings.TrimSpace(key))
		if !ok || !found {
			s.metrics.request("http", resultForbidden)
			w.Header().Set("WWW-Authenticate", `Bearer realm="agora-token-issuer"`)
			httpError(w, http.StatusUnauthorized, wire.CodeForbidden, "missing or unknown API key", 0)
			return
		}
		if ok, wait := s.limiter.allow(principal, s.clk.Now()); !ok {
			s.metrics.request("http", resultRateLimited)
			secs := int((wait + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			httpError(w, http.StatusTooManyRequests, wire.CodeRateLimited, "too many requests", secs)
			return
		}
		s.metrics.sawDevice(principal)
		h(w, r, st, principal)
	}
}

// handleTokens answers GET /v1/tokens?names=a,b like an MQTT request.
func (s *Service) handleTokens(w http.ResponseWriter, r *http.Request, st *state, principal string) {
	var names []string
	if q := r.URL.Query().Get("names"); q != "" {
		if n := strings.Count(q, ",") + 1; n > wire.MaxRequestTokens {
			s.metrics.request("http", resultInvalid)
			httpError(w, http.StatusBadRequest, wire.CodeInvalidRequest,
				fmt.Sprintf("request asks for %d tokens, max %d", n, wire.MaxRequestTokens), 0)
			return
		}
		names = strings.Split(q, ",")
		for _, n := range names {
			if err := wire.ValidateName("token name", n); err != nil {
				s.metrics.request("http", resultInvalid)
				httpError(w, http.StatusBadRequest, wire.CodeInvalidRequest, err.Error(), 0)
				return
			}
		}
	}
	now := s.clk.Wall()
	id := "http-" + strconv.FormatInt(now.UnixNano(), 36)
	reply, result := s.decide(st, principal, id, names, now)
	s.metrics.request("http", result)
	writeJSON(w, statusOf(reply), reply)
}

// handleRTC is the classic GET /rtc/{channel}/{role}/{tokentype}/{uid}/.
func (s *Service) handleRTC(w http.ResponseWriter, r *http.Request, st *state, principal string) {
	channel, uid := r.PathValue("channel"), r.PathValue("uid")
	role, err := accesstoken.ParseRole(r.PathValue("role"))
	if err != nil {
		s.httpRefuse(w, wire.CodeInvalidRequest, err.Error())
		return
	}
	switch r.PathValue("tokentype") {
	case "uid":
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			s.httpRefuse(w, wire.CodeInvalidRequest, fmt.Sprintf("uid %q is not a 32-bit unsigned number", uid))
			return
		}
		uid = accesstoken.UIDString(uint32(n))
	case "userAccount":
	default:
		s.httpRefuse(w, wire.CodeInvalidRequest, "token type must be uid or userAccount")
		return
	}
	g, ok := s.grantFor(w, st, principal, func(g Grant) bool {
		return g.Service == ServiceRTC && (g.Channel == channel || g.Channel == "*") &&
			(g.UID == uid || g.UID == "") &&
			(role == accesstoken.RoleSubscriber || g.Role == accesstoken.RolePublisher.String())
	})
	if !ok {
		return
	}
	g.Channel, g.UID, g.Role = channel, uid, role.String()
	s.signHTTP(w, r, st, g, "rtcToken")
}

// handleRTM is the classic GET /rtm/{uid}/.
func (s *Service) handleRTM(w http.ResponseWriter, r *http.Request, st *state, principal string) {
	user := r.PathValue("uid")
	g, ok := s.grantFor(w, st, principal, func(g Grant) bool {
		return g.Service == ServiceRTM && g.User == user
	})
	if ok {
		s.signHTTP(w, r, st, g, "rtmToken")
	}
}

// grantFor finds the principal's grant that allows what match checks,
// answering 403 when there is none.
func (s *Service) grantFor(w http.ResponseWriter, st *state, principal string, match func(Grant) bool) (Grant, bool) {
	grants, err := st.policy.Grants(principal, nil)
	if err != nil {
		var de *DecisionError
		msg := "internal error"
		if errors.As(err, &de) {
			msg = de.Message
		}
		s.httpRefuse(w, wire.CodeForbidden, msg)
		return Grant{}, false
	}
	for _, g := range grants {
		if match(g) {
			return g, true
		}
	}
	s.httpRefuse(w, wire.CodeForbidden, fmt.Sprintf("the policy grants %q no such token", principal))
	return Grant{}, false
}

// signHTTP signs g, shortened to ?expiry= seconds when asked, and writes
// {field: token}.
func (s *Service) signHTTP(w http.ResponseWriter, r *http.Request, st *state, g Grant, field string) {
	if e := r.URL.Query().Get("expiry"); e != "" {
		n, err := strconv.ParseUint(e, 10, 32)
		if err != nil || n == 0 {
			s.httpRefuse(w, wire.CodeInvalidRequest, "expiry must be a positive number of seconds")
			return
		}
		if d := time.Duration(n) * time.Second; d < g.TTL {
			g.TTL = d
		}
	}
	start := time.Now()
	out, err := st.signer.Sign(g, s.clk.Wall())
	if err != nil {
		s.dlog.Error("signing failed", "token", g.Name, "err", err)
		s.metrics.request("http", resultUnavailable)
		httpError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, "signing failed", 5)
		return
	}
	s.metrics.signing.Observe(time.Since(start).Seconds())
	s.metrics.request("http", resultOK)
	writeJSON(w, http.StatusOK, map[string]string{field: out.Token})
}

func (s *Service) httpRefuse(w http.ResponseWriter, code, msg string) {
	status := http.StatusForbidden
	result := resultForbidden
	if code == wire.CodeInvalidRequest {
		status, result = http.StatusBadRequest, resultInvalid
	}
	s.metrics.request("http", result)
	httpError(w, status, code, msg, 0)
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

func httpError(w http.ResponseWriter, status int, code, msg string, retryAfter int) {
	writeJSON(w, status, map[string]any{"error": wire.ErrorBody{Code: code, Message: msg, RetryAfter: retryAfter}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
