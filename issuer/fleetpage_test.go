package issuer

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func pageGet(t *testing.T, url string, auth func(*http.Request)) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != nil {
		auth(req)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func basic(user, pass string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func bearer(key string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+key) }
}

// Without a valid key neither the page nor its data is served; Basic
// (name and key) and Bearer both work.
func TestFleetPageAuth(t *testing.T) {
	env := startPageEnv(t, 3)
	// An operator key reads the fleet and mints nothing.
	if res := pageGet(t, env.url+"/v1/tokens", bearer(pageKey)); res.StatusCode != http.StatusForbidden {
		t.Errorf("an operator key asking for tokens: %d, want 403", res.StatusCode)
	}
	paths := []string{"/fleet/", "/fleet/app.js", "/fleet/app.css", "/fleet/api/fleet", "/fleet/api/summary",
		"/fleet/api/devices/cam-00001", "/fleet/api/events"}
	refused := map[string]func(*http.Request){
		"no key":         nil,
		"wrong key":      basic(pageKeyName, "not-the-key-0123456789abcdef"),
		"wrong name":     basic("someone-else", pageKey),
		"wrong bearer":   bearer("not-the-key-0123456789abcdef"),
		"key as user":    basic(pageKey, ""),
		"empty password": basic(pageKeyName, ""),
		// A key that mints tokens is not an operator key.
		"minting key":        bearer(mintingKey),
		"minting key, basic": basic("cam-00001", mintingKey),
	}
	for _, p := range paths {
		for name, auth := range refused {
			res := pageGet(t, env.url+p, auth)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != `Basic realm="agora-token-issuer fleet"` {
				t.Errorf("%s %s: %d %q, want 401 with the Basic challenge", p, name, res.StatusCode, res.Header.Get("WWW-Authenticate"))
			}
			if strings.Contains(string(body), "cam-0000") || strings.Contains(string(body), "<html") {
				t.Errorf("%s %s: refused, yet the body shows data: %.80q", p, name, body)
			}
		}
	}
	for _, p := range paths[:6] {
		for name, auth := range map[string]func(*http.Request){"basic": basic(pageKeyName, pageKey), "bearer": bearer(pageKey)} {
			res := pageGet(t, env.url+p, auth)
			if res.StatusCode != http.StatusOK || res.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s %s: %d, want 200 (no-store)", p, name, res.StatusCode)
			}
		}
	}
}

// The API's fleet is fleet status --json's, and the event stream sends
// the summary, live.
func TestFleetPageAPI(t *testing.T) {
	env := startPageEnv(t, 30)
	res := pageGet(t, env.url+"/fleet/api/fleet", bearer(pageKey))
	var got FleetStatus
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := env.fleetStatusJSON(t)
	if g, w := jsonOf(t, got.Totals), jsonOf(t, want.Totals); g != w {
		t.Fatalf("totals %s, fleet status says %s", g, w)
	}
	if len(got.Devices) != 30 || got.Devices[3].ID != "cam-00003" || len(got.Devices[3].Refused) != 1 ||
		got.Devices[3].Tokens[0].ExpiresIn < 3500 || got.Totals.Offline != 4 {
		t.Fatalf("devices %+v", got.Devices[:4])
	}

	res = pageGet(t, env.url+"/fleet/api/devices/cam-00004", bearer(pageKey))
	var d FleetDeviceDetail
	if err := json.NewDecoder(res.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.ID != "cam-00004" || len(d.Tokens) != 2 || d.Tokens[0].Service != "rtc" || d.Tokens[0].Channel != "cam-cam-00004" ||
		d.Tokens[0].ExpiresIn > 300 || d.Agent != "1.3.2" {
		t.Fatalf("detail %+v", d)
	}
	if res := pageGet(t, env.url+"/fleet/api/devices/nobody", bearer(pageKey)); res.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown device: %d", res.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", env.url+"/fleet/api/events", nil)
	basic(pageKeyName, pageKey)(req)
	ev, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Body.Close()
	if ct := ev.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(ev.Body)
	sc.Buffer(nil, 1<<20)
	var sum FleetSummary
	var sawDevices bool
	for event := ""; sc.Scan(); {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			event = e
		}
		sawDevices = sawDevices || event == "devices"
		if data, ok := strings.CutPrefix(line, "data: "); ok && event == "summary" {
			if err := json.Unmarshal([]byte(data), &sum); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if !sawDevices || sum.Totals.Devices != 30 || sum.Expiring != 6+4 || sum.Refused != 1 || sum.Active != "primary" ||
		len(sum.Charts.Points) != 360 || sum.Campaign != nil {
		t.Fatalf("devices event %v, summary %+v", sawDevices, sum)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The ring counts per second and reports the p99 of its buckets.
func TestRecentRing(t *testing.T) {
	now := time.Unix(1_763_800_000, 0)
	r := newRecentRing(func() time.Time { return now })
	for i := range 100 {
		r.request()
		lat := 20e-6
		if i == 99 {
			lat = 0.5
		}
		r.latency(lat)
	}
	now = now.Add(time.Second)
	pts := r.series(1)
	last := pts[len(pts)-1]
	if len(pts) != ringSeconds || last.T != now.Unix()-1 || last.Requests != 100 {
		t.Fatalf("%d points, last %+v", len(pts), last)
	}
	if last.P99 < 20e-6 || last.P99 > 40e-6 {
		t.Fatalf("p99 %v, want the 20 µs bucket (the slowest is the 100th of 100)", last.P99)
	}
	now = now.Add(ringSeconds * time.Second)
	if pts := r.series(10); pts[len(pts)-1].Requests != 0 || len(pts) != ringSeconds/10 {
		t.Fatalf("an hour later the ring still shows %+v", pts[len(pts)-1])
	}
	for _, c := range []struct {
		s    float64
		want int
	}{{0, 0}, {1e-6, 0}, {1.5e-6, 2}, {2e-6, 2}, {1e-3, 20}, {100, latencyBuckets - 1}} {
		if got := latencyBucket(c.s); got != c.want || (c.want < latencyBuckets-1 && latencyBound(got) < c.s*0.999) {
			t.Errorf("latencyBucket(%v) = %d (bound %v), want %d", c.s, got, latencyBound(got), c.want)
		}
	}
}

// Without http.api_keys_file nobody gets in.
func TestFleetPageWithoutKeysFile(t *testing.T) {
	s := writeSetup(t, `broker: {url: "tcp://127.0.0.1:1"}`, "listen: 127.0.0.1:0")
	log, _ := newLogger(t)
	svc, err := New(Options{ConfigFile: s.config, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveFront(t, svc)
	for _, p := range []string{"/fleet/", "/fleet/api/fleet"} {
		res := pageGet(t, srv.URL+p, basic(pageKeyName, pageKey))
		if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s without a keys file: %d", p, res.StatusCode)
		}
	}
}

// An open event stream does not hold the issuer's shutdown up: it ends,
// and Run returns nil.
func TestFleetPageStreamEndsAtShutdown(t *testing.T) {
	env := startPageEnv(t, 1)
	req, _ := http.NewRequest("GET", env.url+"/fleet/api/events", nil)
	bearer(pageKey)(req)
	ev, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Body.Close()
	sc := bufio.NewScanner(ev.Body)
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() {
		t.Fatalf("no event: %v", sc.Err())
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for sc.Scan() {
		}
	}()
	env.svc.stop(t) // fails the test if Run returns an error (Shutdown timed out)
	select {
	case <-ended:
	case <-time.After(waitTimeout):
		t.Fatal("the event stream outlived the issuer")
	}
}
