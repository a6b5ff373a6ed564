package issuer

import (
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/accesstoken"
)

// BenchmarkHTTPAPI is the token API's handler path in process, from the
// CORS wrapper to the response body, for the two requests
// scripts/bench-http.sh sends with wrk: GET /rtc/… and POST /getToken.
// The request is parsed once and the response discarded, so the figure
// is the issuer's own work per request (routing, authentication, the
// key's rate limit, parsing, authorization, signing, metrics, writing)
// without net/http's connection handling and the system calls. "codec"
// is the token built directly with accesstoken, the floor of the path;
// each handler case run after it also reports its cost in codec builds
// (codec-builds/op), a ratio that a busy machine moves less than the
// nanoseconds.
func BenchmarkHTTPAPI(b *testing.B) {
	s := writeSetup(b, `broker: {url: "tcp://127.0.0.1:1"}`, "listen: 127.0.0.1:0\nhttp:\n  api_keys_file: keys.yaml\n")
	now := time.Now()
	key, err := AddAPIKey(filepath.Join(s.dir, "keys.yaml"), APIKeySpec{Name: "bench", Channels: []string{"bench-*"},
		Services: []string{ServiceRTC, ServiceRTM}, Rate: "1000000000/min"}, now)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := New(Options{ConfigFile: s.config, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	h := svc.Handler()

	builder := &accesstoken.Builder{AppID: testAppID, Certificate: testCert, Now: time.Now}
	codec := func() {
		if _, err := builder.RTCWithAccount("bench-1", "42", accesstoken.RolePublisher, 3600, 3600); err != nil {
			b.Fatal(err)
		}
	}

	get, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/rtc/bench-1/publisher/uid/42/?expiry=3600", nil)
	if err != nil {
		b.Fatal(err)
	}
	get.Header.Set("Authorization", "Bearer "+key)
	const body = `{"tokenType":"rtc","channel":"bench-1","role":"publisher","uid":"42","expire":3600}`
	post, err := http.NewRequest(http.MethodPost, "http://127.0.0.1/getToken", nil)
	if err != nil {
		b.Fatal(err)
	}
	post.Header.Set("Authorization", "Bearer "+key)
	post.Header.Set("Content-Type", "application/json")

	cases := []struct {
		name  string
		base  *http.Request
		body  string
		field string // the answer's JSON key
	}{
		{"GET-rtc", get, "", `{"rtcToken":"007`},
		{"POST-getToken", post, body, `{"token":"007`},
	}
	var codecNs float64 // from the codec case's last round
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			codec()
		}
		codecNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			w := &benchWriter{header: http.Header{}}
			r := new(http.Request)
			rd := strings.NewReader(c.body)
			serve := func() {
				*r = *c.base // the mux writes the pattern and path values into r
				if c.body != "" {
					rd.Reset(c.body)
					r.Body, r.ContentLength = io.NopCloser(rd), int64(len(c.body))
				}
				clear(w.header)
				w.status, w.body = 0, w.body[:0]
				h.ServeHTTP(w, r)
			}
			serve()
			if w.status != http.StatusOK || !strings.HasPrefix(string(w.body), c.field) {
				b.Fatalf("status %d, body %s", w.status, w.body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				serve()
			}
			if codecNs > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/codecNs, "codec-builds/op")
			}
		})
	}
}

// benchWriter is a ResponseWriter that keeps the last response and
// allocates nothing once warm, so that the benchmark counts the handler's
// allocations, not a recorder's.
type benchWriter struct {
	header http.Header
	status int
	body   []byte
}

func (w *benchWriter) Header() http.Header { return w.header }

func (w *benchWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body = append(w.body, p...)
	return len(p), nil
}
