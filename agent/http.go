package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/redact"
	"agoratokens/wire"
)

// httpSource is the Transport over HTTP(S): the issuer's own
// GET /v1/tokens?names=… (a wire.Reply as JSON), or an
// agora-token-service's GET /rtc/… and /rtm/… endpoints.
type httpSource struct {
	cfg    *HTTPConfig
	client *http.Client
	log    *slog.Logger
	ok     atomic.Bool
}

func newHTTPSource(cfg *HTTPConfig, log *slog.Logger) (*httpSource, error) {
	return &httpSource{cfg: cfg, client: &http.Client{}, log: log}, nil
}

// Run has no connection to keep: it tells the engine it may ask at once.
func (h *httpSource) Run(ctx context.Context, hooks TransportHooks) error {
	h.ok.Store(true)
	if hooks.Connected != nil {
		hooks.Connected()
	}
	<-ctx.Done()
	return nil
}

// State is "connected" while the last request worked.
func (h *httpSource) State() string {
	if h.ok.Load() {
		return "connected"
	}
	return "disconnected"
}

// Report does nothing: an HTTP source has nowhere to publish status.
func (h *httpSource) Report(wire.DeviceStatus) {}

// Fetch asks the token server for the tokens req names.
func (h *httpSource) Fetch(ctx context.Context, req wire.Request) (*wire.Reply, error) {
	var rep *wire.Reply
	var err error
	if h.cfg.Kind == HTTPKindTokenService {
		rep, err = h.fetchTokenService(ctx, req)
	} else {
		rep, err = h.fetchIssuer(ctx, req)
	}
	h.ok.Store(err == nil)
	return rep, err
}

func (h *httpSource) get(ctx context.Context, u string) (*http.Response, []byte, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	r.Header.Set("Accept", "application/json")
	if h.cfg.bearer != nil {
		r.Header.Set("Authorization", "Bearer "+h.cfg.bearer.Reveal())
	}
	resp, err := h.client.Do(r)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxPayload+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", redactURL(u), err)
	}
	return resp, body, nil
}

func (h *httpSource) fetchIssuer(ctx context.Context, req wire.Request) (*wire.Reply, error) {
	u := h.cfg.URL + "/v1/tokens"
	if len(req.Tokens) > 0 {
		u += "?names=" + url.QueryEscape(strings.Join(req.Tokens, ","))
	}
	resp, body, err := h.get(ctx, u)
	if err != nil {
		return nil, err
	}
	rep, derr := wire.DecodeReply(body)
	if derr != nil {
		if e := statusError(resp); e != nil {
			return e, nil
		}
		return nil, fmt.Errorf("GET %s: HTTP %d: %w", redactURL(u), resp.StatusCode, derr)
	}
	rep.ID = req.ID // a reply over HTTP answers this very request
	return rep, nil
}

// statusError turns an HTTP error status into an error reply, so that the
// engine treats it as the issuer's answer (429 honours Retry-After).
func statusError(resp *http.Response) *wire.Reply {
	code := ""
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		code = wire.CodeRateLimited
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		code = wire.CodeForbidden
	case resp.StatusCode >= 500:
		code = wire.CodeUnavailable
	case resp.StatusCode >= 400:
		code = wire.CodeInvalidRequest
	default:
		return nil
	}
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return &wire.Reply{V: wire.SchemaVersion, Error: &wire.ErrorBody{
		Code: code, Message: "HTTP " + resp.Status, RetryAfter: ra}}
}

func (h *httpSource) fetchTokenService(ctx context.Context, req wire.Request) (*wire.Reply, error) {
	rep := &wire.Reply{V: wire.SchemaVersion, ID: req.ID}
	want := map[string]bool{}
	for _, n := range req.Tokens {
		want[n] = true
	}
	for _, f := range h.cfg.Fetch {
		if len(want) > 0 && !want[f.Name] {
			continue
		}
		g, errRep, err := h.fetchOne(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("token %q: %w", f.Name, err)
		}
		if errRep != nil {
			errRep.ID = req.ID
			return errRep, nil
		}
		rep.Tokens = append(rep.Tokens, *g)
	}
	if len(rep.Tokens) > 0 {
		rep.IssuedAt = rep.Tokens[0].IssuedAt
	}
	return rep, nil
}

// fetchOne gets one token from an agora-token-service and describes it as
// a grant, from the request and from the token's own fields.
func (h *httpSource) fetchOne(ctx context.Context, f HTTPFetch) (*wire.Grant, *wire.Reply, error) {
	expiry := strconv.Itoa(int(f.Expiry / time.Second))
	g := &wire.Grant{Name: f.Name, Service: f.Service}
	var u, key string
	switch f.Service {
	case "rtc":
		kind, who := "uid", f.UID
		if f.Account != "" {
			kind, who = "userAccount", f.Account
		}
		u = fmt.Sprintf("%s/rtc/%s/%s/%s/%s/?expiry=%s", h.cfg.URL, url.PathEscape(f.Channel),
			url.PathEscape(f.Role), kind, url.PathEscape(who), expiry)
		key = "rtcToken"
		g.Channel, g.UID, g.Role = f.Channel, who, f.Role
	default: // rtm
		u = fmt.Sprintf("%s/rtm/%s/?expiry=%s", h.cfg.URL, url.PathEscape(f.UID), expiry)
		key = "rtmToken"
		g.User = f.UID
	}
	resp, body, err := h.get(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	if e := statusError(resp); e != nil {
		return nil, e, nil
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, nil, fmt.Errorf("GET %s: body is not JSON: %w", redactURL(u), err)
	}
	tok, _ := out[key].(string)
	if tok == "" {
		return nil, nil, fmt.Errorf("GET %s: no %q in the response", redactURL(u), key)
	}
	parsed, err := accesstoken.Parse(tok)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: token does not decode (only AccessToken2 is supported): %w", redactURL(u), err)
	}
	st, _ := accesstoken.ParseServiceType(f.Service)
	var keys []uint16
	if svc := parsed.Service(st); svc != nil {
		for _, p := range svc.Privileges {
			keys = append(keys, p.Key)
		}
	}
	exp, err := parsed.ExpiresAt(st, keys...)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", redactURL(u), err)
	}
	g.Token = tok
	g.IssuedAt, g.ExpiresAt = int64(parsed.IssueTs), int64(exp)
	g.TTL = g.ExpiresAt - g.IssuedAt
	return g, nil, nil
}

// redactURL is a URL fit for errors and logs (see package redact).
func redactURL(u string) string { return redact.URL(u) }
