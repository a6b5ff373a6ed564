package issuer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"agoratokens/wire"
)

// Error codes of the HTTP API, beside the wire codes it shares with MQTT
// (forbidden, invalid_request, rate_limited, unavailable). They are
// stable: clients may branch on them.
const (
	codeUnauthorized = "unauthorized" // 401: no key, or one the issuer does not know
	codeNotFound     = "not_found"    // 404: no such endpoint, or the token API is off
)

// apiError is a refusal of the HTTP API: the status, a stable code, the
// request field at fault (for 400) and a message safe to send.
type apiError struct {
	status     int
	code       string
	field      string
	message    string
	retryAfter int
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// result is the metrics label of the refusal.
func (e *apiError) result() string {
	switch e.code {
	case wire.CodeInvalidRequest:
		return resultInvalid
	case wire.CodeRateLimited:
		return resultRateLimited
	case wire.CodeUnavailable:
		return resultUnavailable
	case codeUnauthorized:
		return codeUnauthorized
	case codeNotFound:
		return codeNotFound
	}
	return resultForbidden
}

// badField is a 400 naming the request field at fault.
func badField(field, format string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: wire.CodeInvalidRequest, field: field,
		message: field + ": " + fmt.Sprintf(format, a...)}
}

func refused(format string, a ...any) *apiError {
	return &apiError{status: http.StatusForbidden, code: wire.CodeForbidden, message: fmt.Sprintf(format, a...)}
}

// errorJSON is the body of every error: {"error":{"code","message",…}}.
type errorJSON struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Field      string `json:"field,omitempty"`
	RetryAfter int    `json:"retry_after,omitempty"`
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="agora-token-issuer"`)
	}
	writeJSON(w, e.status, errorJSON{errorBody{Code: e.code, Message: e.message, Field: e.field, RetryAfter: e.retryAfter}})
}

// keyLimiter keeps a token bucket per API key (and per anonymous client
// address), each with the rate of its key, apart from the devices'
// limiter. Full buckets are forgotten.
type keyLimiter struct {
	mu      sync.Mutex
	buckets map[string]keyBucket
	swept   time.Time
}

type keyBucket struct {
	bucket
	rate RateConfig
}

func newKeyLimiter() *keyLimiter { return &keyLimiter{buckets: map[string]keyBucket{}} }

// allow takes a token from id's bucket at now.
func (l *keyLimiter) allow(id string, rate RateConfig, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kb := l.buckets[id]
	b, ok, wait := take(kb.bucket, now, rate.PerMinute, rate.Burst)
	l.buckets[id] = keyBucket{b, rate}
	if now.Sub(l.swept) > time.Minute {
		l.swept = now
		for k, v := range l.buckets {
			if refill(v.bucket, now, v.rate.PerMinute, v.rate.Burst).tokens >= float64(v.rate.Burst) {
				delete(l.buckets, k)
			}
		}
	}
	return ok, wait
}

// jsonContentType is shared by every JSON response, as cacheControl.
var jsonContentType = []string{"application/json"}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeAPIError(w, &apiError{status: http.StatusInternalServerError, code: wire.CodeUnavailable, message: "encoding the answer failed"})
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
