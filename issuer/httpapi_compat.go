package issuer

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/wire"
)

// The endpoints of the seed token servers, so that their clients work
// against the issuer by changing the base URL and adding an API key:
//
//	agora-token-service  GET /ping, POST /getToken, GET /rtc/…, /rtm/…,
//	                     /rte/…, /chat/app/, /chat/account/{id}/
//	the Express sample   POST /rtctoken, POST /rtmtoken
//	the Spring sample    GET /chat/app/token, /chat/user/{name}/token (text)
//	Flexible Classroom   GET /education/app/, /education/user/{user}/,
//	                     /education/room/{room}/{role}/{user}/
//
// docs/http-api.md describes every shape and error.

// maxBodyBytes bounds a POST body.
const maxBodyBytes = 16 << 10

// route registers h for pattern with and without a trailing slash, as
// agora-token-service answers both.
func route(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	mux.HandleFunc(pattern, h)
	mux.HandleFunc(pattern+"/{$}", h)
}

// compatRoutes adds the seed servers' endpoints to mux.
func (s *Service) compatRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Cache-Control"] = cacheControl
		h["Content-Type"] = jsonContentType
		_, _ = w.Write([]byte("{\"message\":\"pong\"}\n"))
	})
	route(mux, "POST /getToken", s.api("getToken", getToken))
	route(mux, "GET /rtc/{channel}/{role}/{tokentype}/{uid}", s.api("rtc", rtcToken))
	route(mux, "GET /rtm/{uid}", s.api("rtm", rtmToken))
	route(mux, "GET /rte/{channel}/{role}/{tokentype}/{rtcuid}", s.api("rte", rteToken))
	route(mux, "GET /rte/{channel}/{role}/{tokentype}/{rtcuid}/{rtmuid}", s.api("rte", rteToken))
	route(mux, "GET /chat/app", s.api("chat_app", chatAppToken))
	route(mux, "GET /chat/account/{id}", s.api("chat_account", chatUserToken))
	route(mux, "GET /chat/app/token", s.api("chat_app_text", chatAppText))
	route(mux, "GET /chat/user/{id}/token", s.api("chat_user_text", chatUserText))
	route(mux, "POST /rtctoken", s.api("rtctoken", expressRTC))
	route(mux, "POST /rtmtoken", s.api("rtmtoken", expressRTM))
	route(mux, "GET /education/app", s.api("education_app", educationApp))
	route(mux, "GET /education/user/{user}", s.api("education_user", educationUser))
	route(mux, "GET /education/room/{room}/{role}/{user}", s.api("education_room_user", educationRoomUser))
}

// expressRTCJSON is the Express sample's /rtctoken answer.
type expressRTCJSON struct {
	UID   uint32 `json:"uid"`
	Token string `json:"token"`
}

// parseRole reads an RTC role: publisher or subscriber, or 1 and 2 as
// the IoT page's Kotlin client sends them, in any case.
func parseRole(field, s string) (accesstoken.Role, *apiError) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "publisher", "1":
		return accesstoken.RolePublisher, nil
	case "subscriber", "2":
		return accesstoken.RoleSubscriber, nil
	case "":
		return 0, badField(field, "missing; publisher (1) or subscriber (2)")
	}
	return 0, badField(field, "%q is not publisher (1) or subscriber (2)", clip(s))
}

// parseChannel checks an RTC channel name; "*" is the wildcard channel,
// which the caller's grant must allow.
func parseChannel(field, ch string) (string, *apiError) {
	if ch == accesstoken.WildcardChannel {
		return ch, nil
	}
	if err := accesstoken.ValidateChannel(ch); err != nil {
		return "", badField(field, "%v", clipErr(err))
	}
	return ch, nil
}

// parseRTCUser reads an RTC identity of tokentype uid (a 32-bit number,
// 0 for any) or userAccount, returning it as packed.
func parseRTCUser(typeField, tokentype, uidField, uid string) (string, *apiError) {
	switch strings.ToLower(tokentype) {
	case "uid":
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return "", badField(uidField, "%q is not a 32-bit unsigned number (tokentype uid)", clip(uid))
		}
		return accesstoken.UIDString(uint32(n)), nil
	case "useraccount":
		return parseUser(uidField, uid)
	}
	return "", badField(typeField, "%q is not uid or userAccount", clip(tokentype))
}

// parseUser checks a user account or id (RTM, Chat, education).
func parseUser(field, u string) (string, *apiError) {
	if u == "" {
		return "", badField(field, "missing")
	}
	if err := accesstoken.ValidateAccount(field, u); err != nil {
		return "", badField(field, "%d bytes, max %d", len(u), accesstoken.MaxAccountLen)
	}
	for i := 0; i < len(u); i++ {
		if u[i] < 0x20 || u[i] == 0x7f {
			return "", badField(field, "has a control character at byte %d", i+1)
		}
	}
	return u, nil
}

// parseExpiry reads a lifetime in seconds: absent is the default (0),
// otherwise 1..24h.
func parseExpiry(field, s string) (time.Duration, *apiError) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, badField(field, "%q is not a number of seconds", clip(s))
	}
	return checkExpiry(field, n)
}

func checkExpiry(field string, n int64) (time.Duration, *apiError) {
	if n <= 0 || n > accesstoken.MaxExpire {
		return 0, badField(field, "%d is not between 1 and %d seconds", n, accesstoken.MaxExpire)
	}
	return time.Duration(n) * time.Second, nil
}

func queryExpiry(c *call) (time.Duration, *apiError) {
	v, aerr := queryValue(c.r.URL.RawQuery, "expiry")
	if aerr != nil {
		return 0, aerr
	}
	return parseExpiry("expiry", v)
}

// queryValue returns the first value of key in a raw query. It scans
// instead of building url.Values: on the hot path that map was the
// largest allocation of a request.
func queryValue(raw, key string) (string, *apiError) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != key {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return "", badField(key, "badly escaped")
			}
			v = u
		}
		return v, nil
	}
	return "", nil
}

// cacheControl is agora-token-service's Cache-Control, one slice shared
// by every response (net/http copies it; nothing appends to it).
var cacheControl = []string{"private, no-cache, no-store, must-revalidate"}

// tokenObject is the JSON object {k1: v1[, k2: v2]}, built without
// encoding/json: tokens need no escaping.
func tokenObject(k1, v1, k2, v2 string) []byte {
	b := make([]byte, 0, 16+len(k1)+len(v1)+len(k2)+len(v2))
	b = append(b, '{')
	b = appendJSONString(b, k1)
	b = append(b, ':')
	b = appendJSONString(b, v1)
	if k2 != "" {
		b = append(b, ',')
		b = appendJSONString(b, k2)
		b = append(b, ':')
		b = appendJSONString(b, v2)
	}
	return append(b, '}', '\n')
}

// appendJSONString appends s as a JSON string, through encoding/json
// when any byte needs escaping.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if jsonEscaped[s[i]] {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// jsonEscaped marks the bytes encoding/json escapes in a string (control
// characters, '"', '\\', the HTML ones) and every non-ASCII byte. A table
// lookup per byte: a token is a few hundred bytes, and testing each
// against seven ranges was a twentieth of a GET /rtc in process.
var jsonEscaped = func() (t [256]bool) {
	for c := range t {
		t[c] = c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&'
	}
	return t
}()

// clip shortens what a caller sent before it goes into a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func clipErr(err error) string { return clip(err.Error()) }

// rtcMint reads the classic path parameters of /rtc and /rte (a value:
// returned by pointer, it was one more allocation a request).
func rtcMint(c *call, uidParam string) (mint, *apiError) {
	ch, aerr := parseChannel("channel", c.r.PathValue("channel"))
	if aerr != nil {
		return mint{}, aerr
	}
	role, aerr := parseRole("role", c.r.PathValue("role"))
	if aerr != nil {
		return mint{}, aerr
	}
	uid, aerr := parseRTCUser("tokentype", c.r.PathValue("tokentype"), uidParam, c.r.PathValue(uidParam))
	if aerr != nil {
		return mint{}, aerr
	}
	ttl, aerr := queryExpiry(c)
	if aerr != nil {
		return mint{}, aerr
	}
	return mint{service: ServiceRTC, channel: ch, uid: uid, role: role, ttl: ttl}, nil
}

// expiryMint is a token of service and kind that the query's expiry
// alone describes.
func expiryMint(c *call, service, kind string) (mint, *apiError) {
	ttl, aerr := queryExpiry(c)
	return mint{service: service, kind: kind, ttl: ttl}, aerr
}

// userMint is a token of service and kind for the user in the path
// parameter param, with the query's expiry.
func userMint(c *call, param, service, kind string) (mint, *apiError) {
	user, aerr := parseUser(param, c.r.PathValue(param))
	if aerr != nil {
		return mint{}, aerr
	}
	m, aerr := expiryMint(c, service, kind)
	m.user = user
	return m, aerr
}

// oneToken mints m, unless reading it failed (aerr), and answers
// {key: token}.
func (s *Service) oneToken(c *call, m mint, aerr *apiError, key string) (answer, *apiError) {
	if aerr != nil {
		return answer{}, aerr
	}
	tok, aerr := s.mintOne(c, &m)
	if aerr != nil {
		return answer{}, aerr
	}
	return answer{raw: tokenObject(key, tok, "", "")}, nil
}

// rtcToken is agora-token-service's GET /rtc/{channel}/{role}/{tokentype}/{uid}/.
func rtcToken(s *Service, c *call) (answer, *apiError) {
	m, aerr := rtcMint(c, "uid")
	return s.oneToken(c, m, aerr, "rtcToken")
}

// rtmToken is agora-token-service's GET /rtm/{uid}/.
func rtmToken(s *Service, c *call) (answer, *apiError) {
	m, aerr := userMint(c, "uid", ServiceRTM, "")
	return s.oneToken(c, m, aerr, "rtmToken")
}

// rteToken is agora-token-service's GET /rte/…: an RTC and an RTM token,
// the RTM user being rtmuid or else the RTC uid.
func rteToken(s *Service, c *call) (answer, *apiError) {
	m, aerr := rtcMint(c, "rtcuid")
	if aerr != nil {
		return answer{}, aerr
	}
	rtmUser := c.r.PathValue("rtmuid")
	if rtmUser == "" {
		rtmUser = c.r.PathValue("rtcuid")
	}
	user, aerr := parseUser("rtmuid", rtmUser)
	if aerr != nil {
		return answer{}, aerr
	}
	rtc, aerr := s.mintOne(c, &m)
	if aerr != nil {
		return answer{}, aerr
	}
	rtm, aerr := s.mintOne(c, &mint{service: ServiceRTM, user: user, ttl: m.ttl})
	if aerr != nil {
		return answer{}, aerr
	}
	return answer{raw: tokenObject("rtcToken", rtc, "rtmToken", rtm)}, nil
}

func chatApp(s *Service, c *call) (string, *apiError) {
	m, aerr := expiryMint(c, ServiceChat, "app")
	if aerr != nil {
		return "", aerr
	}
	return s.mintOne(c, &m)
}

func chatUser(s *Service, c *call) (string, *apiError) {
	m, aerr := userMint(c, "id", ServiceChat, "user")
	if aerr != nil {
		return "", aerr
	}
	return s.mintOne(c, &m)
}

// chatAppToken is agora-token-service's GET /chat/app/.
func chatAppToken(s *Service, c *call) (answer, *apiError) {
	tok, aerr := chatApp(s, c)
	return answer{raw: tokenObject("chatToken", tok, "", "")}, aerr
}

// chatUserToken is agora-token-service's GET /chat/account/{id}/.
func chatUserToken(s *Service, c *call) (answer, *apiError) {
	tok, aerr := chatUser(s, c)
	return answer{raw: tokenObject("chatToken", tok, "", "")}, aerr
}

// chatAppText is the Spring sample's GET /chat/app/token: the bare token.
func chatAppText(s *Service, c *call) (answer, *apiError) {
	tok, aerr := chatApp(s, c)
	return answer{text: tok}, aerr
}

// chatUserText is the Spring sample's GET /chat/user/{name}/token.
func chatUserText(s *Service, c *call) (answer, *apiError) {
	tok, aerr := chatUser(s, c)
	return answer{text: tok}, aerr
}

// flexString decodes a JSON string or integer (clients send uids and
// roles as either).
type flexString struct {
	s   string
	set bool
	num bool // sent as a JSON number
}

func (f *flexString) UnmarshalJSON(b []byte) error {
	// encoding/json has checked that b is one valid JSON value.
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case b[0] == '"' && bytes.IndexByte(b, '\\') < 0:
		f.s, f.set = string(b[1:len(b)-1]), true // no escapes: the bytes are the string
		return nil
	case b[0] == '"':
		f.set = true
		return json.Unmarshal(b, &f.s)
	case b[0] == '-' || '0' <= b[0] && b[0] <= '9':
		f.s, f.set, f.num = string(b), true, true
		return nil
	}
	// A type error gets the field's name from encoding/json.
	return &json.UnmarshalTypeError{Value: "not a string or a number", Type: reflect.TypeFor[string]()}
}

// bodyBuffers hold request bodies while they are decoded: reading each
// into a fresh slice was a tenth of a POST's allocations.
var bodyBuffers = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 1024)) }}

// decodeBody decodes a JSON request body into v, naming the field of a
// type error.
func decodeBody(c *call, v any) *apiError {
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer bodyBuffers.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(c.r.Body, maxBodyBytes+1)); err != nil {
		return badField("body", "reading it failed")
	}
	body := buf.Bytes() // json.Unmarshal copies what it keeps
	if len(body) > maxBodyBytes {
		return badField("body", "over %d bytes", maxBodyBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badField("body", "empty; send a JSON object")
	}
	if d, ok := v.(flatDecoder); ok && d.decodeFlat(body) {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return badField(te.Field, "wrong type (%s)", te.Value)
		}
		return badField("body", "not a JSON object: %s", clipErr(err))
	}
	return nil
}

// getTokenBody is agora-token-service's POST /getToken request.
type getTokenBody struct {
	TokenType string     `json:"tokenType"`
	Channel   string     `json:"channel"`
	Role      flexString `json:"role"`
	UID       flexString `json:"uid"`
	Expire    *int64     `json:"expire"`
}

// getToken is agora-token-service's POST /getToken → {"token"}.
func getToken(s *Service, c *call) (answer, *apiError) {
	var b getTokenBody
	if aerr := decodeBody(c, &b); aerr != nil {
		return answer{}, aerr
	}
	var ttl time.Duration
	if b.Expire != nil {
		var aerr *apiError
		if ttl, aerr = checkExpiry("expire", *b.Expire); aerr != nil {
			return answer{}, aerr
		}
	}
	var m *mint
	switch strings.ToLower(b.TokenType) {
	case "rtc":
		ch, aerr := parseChannel("channel", b.Channel)
		if aerr != nil {
			return answer{}, aerr
		}
		role, aerr := parseRole("role", b.Role.s)
		if aerr != nil {
			return answer{}, aerr
		}
		// Digits are a uid (0 or none: any uid), anything else an account.
		uid := ""
		switch {
		case isDigits(b.UID.s) || b.UID.num:
			if uid, aerr = parseRTCUser("tokenType", "uid", "uid", b.UID.s); aerr != nil {
				return answer{}, aerr
			}
		case b.UID.s != "":
			if uid, aerr = parseUser("uid", b.UID.s); aerr != nil {
				return answer{}, aerr
			}
		}
		m = &mint{service: ServiceRTC, channel: ch, uid: uid, role: role, ttl: ttl}
	case "rtm":
		user, aerr := parseUser("uid", b.UID.s)
		if aerr != nil {
			return answer{}, aerr
		}
		m = &mint{service: ServiceRTM, user: user, ttl: ttl}
	case "chat":
		m = &mint{service: ServiceChat, kind: "app", ttl: ttl}
		if b.UID.s != "" {
			user, aerr := parseUser("uid", b.UID.s)
			if aerr != nil {
				return answer{}, aerr
			}
			m.kind, m.user = "user", user
		}
	case "":
		return answer{}, badField("tokenType", "missing; rtc, rtm or chat")
	default:
		return answer{}, badField("tokenType", "%q is not rtc, rtm or chat", clip(b.TokenType))
	}
	tok, aerr := s.mintOne(c, m)
	if aerr != nil {
		return answer{}, aerr
	}
	return answer{raw: tokenObject("token", tok, "", "")}, nil
}

// numericUID parses a canonical decimal uid.
func numericUID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, false
	}
	return uint32(n), true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// expressRTCBody is the Express sample's POST /rtctoken request.
type expressRTCBody struct {
	Channel     string `json:"channel"`
	IsPublisher bool   `json:"isPublisher"`
}

// expressRTC is the Express sample's POST /rtctoken → {uid, token}, the
// server choosing a non-zero uid.
func expressRTC(s *Service, c *call) (answer, *apiError) {
	var b expressRTCBody
	if aerr := decodeBody(c, &b); aerr != nil {
		return answer{}, aerr
	}
	ch, aerr := parseChannel("channel", b.Channel)
	if aerr != nil {
		return answer{}, aerr
	}
	role := accesstoken.RoleSubscriber
	if b.IsPublisher {
		role = accesstoken.RolePublisher
	}
	uid, err := chooseUID(c)
	if err != nil {
		return answer{}, refused("%v", err)
	}
	tok, aerr := s.mintOne(c, &mint{service: ServiceRTC, channel: ch, uid: accesstoken.UIDString(uid), role: role})
	if aerr != nil {
		return answer{}, aerr
	}
	return answer{json: expressRTCJSON{UID: uid, Token: tok}}, nil
}

// expressRTM is the Express sample's POST /rtmtoken {user} → {token}.
func expressRTM(s *Service, c *call) (answer, *apiError) {
	var b struct {
		User flexString `json:"user"`
	}
	if aerr := decodeBody(c, &b); aerr != nil {
		return answer{}, aerr
	}
	user, aerr := parseUser("user", b.User.s)
	if aerr != nil {
		return answer{}, aerr
	}
	tok, aerr := s.mintOne(c, &mint{service: ServiceRTM, user: user})
	if aerr != nil {
		return answer{}, aerr
	}
	return answer{raw: tokenObject("token", tok, "", "")}, nil
}

// educationApp is GET /education/app/ → {"token"}: an APaaS app token.
func educationApp(s *Service, c *call) (answer, *apiError) {
	m, aerr := expiryMint(c, ServiceEducation, "app")
	return s.oneToken(c, m, aerr, "token")
}

// educationUser is GET /education/user/{user}/ → {"token"}.
func educationUser(s *Service, c *call) (answer, *apiError) {
	m, aerr := userMint(c, "user", ServiceEducation, "user")
	return s.oneToken(c, m, aerr, "token")
}

// educationRoomUser is GET /education/room/{room}/{role}/{user}/ →
// {"token"}: the room-user token a Flexible Classroom client launches
// with (APaaS room user, RTM login and Chat user in one token).
func educationRoomUser(s *Service, c *call) (answer, *apiError) {
	room, aerr := parseUser("room", c.r.PathValue("room"))
	if aerr != nil {
		return answer{}, aerr
	}
	rs := c.r.PathValue("role")
	role, err := strconv.ParseInt(rs, 10, 16)
	if err != nil || role < 0 {
		return answer{}, badField("role", "%q is not a classroom role number (0 to 32767)", clip(rs))
	}
	user, aerr := parseUser("user", c.r.PathValue("user"))
	if aerr != nil {
		return answer{}, aerr
	}
	m, aerr := expiryMint(c, ServiceEducation, "room_user")
	m.channel, m.user, m.eduRole = room, user, int16(role)
	return s.oneToken(c, m, aerr, "token")
}

// v1Tokens is GET /v1/tokens?names=a,b for principal keys: the device's
// policy, as an MQTT request would get it.
func v1Tokens(s *Service, c *call) (answer, *apiError) {
	if c.who.principal == "" {
		return answer{}, refused("/v1/tokens serves principal keys (the policy decides); this key has a grant of its own: use the token endpoints")
	}
	var names []string
	if q := c.r.URL.Query().Get("names"); q != "" {
		if n := strings.Count(q, ",") + 1; n > wire.MaxRequestTokens {
			return answer{}, badField("names", "request asks for %d tokens, max %d", n, wire.MaxRequestTokens)
		}
		names = strings.Split(q, ",")
		for _, n := range names {
			if err := wire.ValidateName("token name", n); err != nil {
				return answer{}, badField("names", "%v", clipErr(err))
			}
		}
	}
	id := "http-" + strconv.FormatInt(c.now.UnixNano(), 36)
	reply, result := s.decide(c.st, c.who.principal, id, names, c.now)
	return answer{status: statusOf(reply), json: reply, result: result}, nil
}
