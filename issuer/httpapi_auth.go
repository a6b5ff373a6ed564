package issuer

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"agoratokens/accesstoken"
	"agoratokens/wire"
)

// caller is who makes an HTTP API request: a named key with its grant, a
// principal key the policy decides for, or (insecure_allow_anonymous) an
// anonymous client with the anonymous grant.
type caller struct {
	name      string    // key name, or "anonymous"
	principal string    // principal key: the device id the policy applies to
	grant     *keyGrant // named key or anonymous caller
	anonymous bool
}

// mint is one token a caller asks for, validated.
type mint struct {
	service string
	kind    string // chat: user|app; education: room_user|user|app
	channel string // rtc channel, or education room
	uid     string // rtc uid or account as packed ("" is uid 0)
	user    string // rtm, chat and education user
	role    accesstoken.Role
	eduRole int16
	ttl     time.Duration // asked for; 0: the default
}

// call is one API request in flight.
type call struct {
	r   *http.Request
	st  *state
	who caller
	now time.Time
}

// answer is what an endpoint returns on success.
type answer struct {
	status int    // 0: 200
	json   any    // the JSON body, unless raw or text is set
	raw    []byte // a JSON body already encoded
	text   string // a text/plain body (the Spring sample's shape)
	result string // the metrics result when status is not 200
}

// endpoint handles one API route.
type endpoint func(s *Service, c *call) (answer, *apiError)

// api wraps an endpoint with what every token endpoint does: no caching,
// authentication, the per-key rate limit, errors as JSON and metrics per
// endpoint and result.
func (s *Service) api(name string, h endpoint) http.HandlerFunc {
	// The counters of a success, looked up once: a label lookup hashes
	// the values and takes a lock, twice a request. On first use, so
	// that /metrics shows only the endpoints that served.
	ok := sync.OnceValue(func() [2]prometheus.Counter {
		return [2]prometheus.Counter{s.metrics.endpoints.WithLabelValues(name, resultOK),
			s.metrics.requests.WithLabelValues("http", resultOK)}
	})
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Cache-Control"] = cacheControl
		c := &call{r: r, st: s.state.Load(), now: s.clk.Wall()}
		a, aerr := s.serveAPI(c, h)
		if aerr != nil {
			s.metrics.endpoint(name, aerr.result())
			if aerr.code != codeUnauthorized && aerr.code != codeNotFound {
				s.metrics.request("http", aerr.result())
			}
			if aerr.status >= 500 {
				s.log.Error("http request failed", "endpoint", name, "key", c.who.name, "code", aerr.code, "reason", aerr.message)
			} else {
				s.log.Debug("http request refused", "endpoint", name, "key", c.who.name, "status", aerr.status, "code", aerr.code, "reason", aerr.message)
			}
			writeAPIError(w, aerr)
			return
		}
		if a.result == "" || a.result == resultOK {
			// The counts of metrics.endpoint and metrics.request, without
			// their label lookups.
			c := ok()
			c[0].Inc()
			c[1].Inc()
			s.metrics.recent.request()
		} else {
			s.metrics.endpoint(name, a.result)
			s.metrics.request("http", a.result)
		}
		status := a.status
		if status == 0 {
			status = http.StatusOK
		}
		if a.raw != nil {
			w.Header()["Content-Type"] = jsonContentType
			w.WriteHeader(status)
			_, _ = w.Write(a.raw)
			return
		}
		if a.json == nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(a.text))
			return
		}
		writeJSONBody(w, status, a.json)
	}
}

func (s *Service) serveAPI(c *call, h endpoint) (answer, *apiError) {
	st := c.st
	if st.keys == nil && st.http.anonymous == nil {
		return answer{}, &apiError{status: http.StatusNotFound, code: codeNotFound,
			message: "the token API is off (set http.api_keys_file or http.insecure_allow_anonymous)"}
	}
	who, rate, limitID, aerr := authenticate(st, c.r)
	if aerr != nil {
		return answer{}, aerr
	}
	c.who = who
	if who.anonymous {
		// Also after a reload turned anonymous mode on.
		st.http.anonSeen.Do(func() {
			s.log.Warn("INSECURE: serving a caller without an API key (http.insecure_allow_anonymous)", "endpoint", c.r.URL.Path)
		})
	}
	if ok, wait := s.keyRate.allow(limitID, rate, c.now); !ok {
		secs := int((wait + time.Second - 1) / time.Second)
		return answer{}, &apiError{status: http.StatusTooManyRequests, code: wire.CodeRateLimited,
			message: "too many requests for this key", retryAfter: secs}
	}
	if who.principal != "" {
		s.metrics.sawDevice(who.principal)
	}
	return h(s, c)
}

// authenticate finds the caller of r and its rate limit.
func authenticate(st *state, r *http.Request) (caller, RateConfig, string, *apiError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if a := st.http.anonymous; a != nil {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			return caller{name: "anonymous", grant: a, anonymous: true}, st.http.anonRate, "anon:" + host, nil
		}
		return caller{}, RateConfig{}, "", &apiError{status: http.StatusUnauthorized, code: codeUnauthorized,
			message: "missing or unknown API key (send Authorization: Bearer KEY)"}
	}
	scheme, key, _ := strings.Cut(h, " ")
	k := st.keys.find(strings.TrimSpace(key))
	if !strings.EqualFold(scheme, "Bearer") || k == nil {
		return caller{}, RateConfig{}, "", &apiError{status: http.StatusUnauthorized, code: codeUnauthorized,
			message: "missing or unknown API key (send Authorization: Bearer KEY)"}
	}
	if k.operator {
		return caller{}, RateConfig{}, "", refused("key %q is an operator key: it reads the fleet and mints nothing", k.name)
	}
	rate := k.rate
	if rate.PerMinute == 0 {
		rate = st.cfg.HTTP.KeyRate
	}
	return caller{name: k.name, principal: k.principal, grant: k.grant}, rate, k.limitID, nil
}

// authorize decides m for the caller and returns the grant to sign.
func authorize(c *call, m *mint) (Grant, *apiError) {
	if c.who.grant == nil {
		return authorizeByPolicy(c, m)
	}
	g := c.who.grant
	what := "this key"
	if c.who.anonymous {
		what = "anonymous callers"
	}
	if !g.allowsService(m.service) {
		return Grant{}, refused("%s may not mint %s tokens", what, m.service)
	}
	if (m.service == ServiceRTC || m.kind == "room_user") && !g.allowsChannel(m.channel) {
		return Grant{}, refused("%s may not mint tokens for channel %q", what, clip(m.channel))
	}
	id, app := m.user, m.kind == "app"
	if m.service == ServiceRTC {
		id = m.uid
	}
	switch {
	case app && len(g.uids) > 0:
		return Grant{}, refused("%s is limited to some uids, so it may not mint app tokens", what)
	case !app && !g.allowsIdentity(id):
		if id == "" {
			id = "0"
		}
		return Grant{}, refused("%s may not mint tokens for uid %q", what, id)
	}
	maxTTL := c.st.cfg.Limits.MaxTTL
	if g.maxTTL != 0 && g.maxTTL < maxTTL {
		maxTTL = g.maxTTL
	}
	ttl := m.ttl
	switch {
	case ttl == 0:
		ttl = min(DefaultHTTPExpire, maxTTL)
	case ttl > maxTTL:
		return Grant{}, refused("expiry %ds is over the %ds %s may ask for", int(ttl/time.Second), int(maxTTL/time.Second), what)
	}
	return Grant{Name: m.service, Service: m.service, Kind: m.kind, Channel: m.channel, UID: m.uid,
		Role: grantRole(m), User: m.user, Room: m.channel, TTL: ttl}, nil
}

func grantRole(m *mint) string {
	switch m.service {
	case ServiceRTC:
		return m.role.String()
	case ServiceEducation:
		return fmt.Sprint(m.eduRole)
	}
	return ""
}

// authorizeByPolicy finds a policy grant of the principal that covers m:
// a principal key gets through HTTP only what its device would get.
func authorizeByPolicy(c *call, m *mint) (Grant, *apiError) {
	grants, err := c.st.policy.Grants(c.who.principal, nil)
	if err != nil {
		var de *DecisionError
		if errors.As(err, &de) {
			return Grant{}, refused("%s", de.Message)
		}
		return Grant{}, &apiError{status: http.StatusServiceUnavailable, code: wire.CodeUnavailable, message: "internal error", retryAfter: 5}
	}
	for _, g := range grants {
		if g.Service != m.service {
			continue
		}
		ok := false
		switch m.service {
		case ServiceRTC:
			ok = (g.Channel == m.channel || g.Channel == accesstoken.WildcardChannel) &&
				(g.UID == m.uid || g.UID == "") &&
				(m.role == accesstoken.RoleSubscriber || g.Role == accesstoken.RolePublisher.String())
			g.Channel, g.UID, g.Role = m.channel, m.uid, m.role.String()
		case ServiceRTM:
			ok = g.User == m.user
		case ServiceChat:
			ok = (g.Kind == "app") == (m.kind == "app") && g.User == m.user
		case ServiceEducation:
			ok = g.Kind == m.kind && g.User == m.user && g.Room == m.channel &&
				(m.kind != "room_user" || g.Role == fmt.Sprint(m.eduRole))
		}
		if !ok {
			continue
		}
		if m.ttl > 0 && m.ttl < g.TTL {
			g.TTL = m.ttl
		}
		return g, nil
	}
	return Grant{}, refused("the policy grants %q no such token", c.who.principal)
}

// sign signs g at the request's time.
func (s *Service) sign(c *call, g Grant) (wire.Grant, *apiError) {
	start := time.Now()
	out, err := c.st.signer.Sign(g, c.now)
	if err != nil {
		s.log.Error("signing failed", "service", g.Service, "err", err)
		return wire.Grant{}, &apiError{status: http.StatusServiceUnavailable, code: wire.CodeUnavailable, message: "signing failed", retryAfter: 5}
	}
	s.metrics.signing.Observe(time.Since(start).Seconds())
	return out, nil
}

// mintOne authorizes and signs m and returns the token.
func (s *Service) mintOne(c *call, m *mint) (string, *apiError) {
	g, aerr := authorize(c, m)
	if aerr != nil {
		return "", aerr
	}
	out, aerr := s.sign(c, g)
	if aerr != nil {
		return "", aerr
	}
	return out.Token, nil
}

// chooseUID picks the uid of a caller that lets the server choose (the
// Express sample's /rtctoken): the policy's uid for a principal key, a
// random one inside the key's uid ranges, else a random non-zero one.
func chooseUID(c *call) (uint32, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	r := binary.LittleEndian.Uint64(b[:])
	if c.who.grant == nil {
		if grants, err := c.st.policy.Grants(c.who.principal, nil); err == nil {
			for _, g := range grants {
				if g.Service == ServiceRTC && g.UID != "" {
					if n, ok := numericUID(g.UID); ok {
						return n, nil
					}
				}
			}
		}
	}
	if c.who.grant == nil || len(c.who.grant.uids) == 0 {
		return uint32(r%(1<<32-1)) + 1, nil
	}
	var total uint64
	for _, u := range c.who.grant.uids {
		lo := max(u.lo, 1)
		if u.hi >= lo {
			total += uint64(u.hi-lo) + 1
		}
	}
	if total == 0 {
		return 0, errors.New("the key's uid ranges hold only 0")
	}
	pick := r % total
	for _, u := range c.who.grant.uids {
		lo := max(u.lo, 1)
		if u.hi < lo {
			continue
		}
		if n := uint64(u.hi-lo) + 1; pick < n {
			return lo + uint32(pick), nil
		} else {
			pick -= n
		}
	}
	return 0, errors.New("no uid picked")
}
