package issuer

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"agoratokens/clock"
	"agoratokens/wire"
)

// BenchmarkFleetPage10k: a page of 10,000 devices in headless chromium,
// from navigation until the table is drawn and filled (ms/interactive,
// the browser's own performance.now() at that moment), then a glob typed
// into the search box until the table shows its matches (ms/filter).
// The issuer's registry is fed the statuses directly, as its broker
// subscription would.
func BenchmarkFleetPage10k(b *testing.B) {
	const n = 10_000
	s := writeSetup(b, `broker: {url: "tcp://127.0.0.1:1"}`, "listen: 127.0.0.1:0\nhttp: {api_keys_file: keys.yaml}")
	writeFileTB(b, filepath.Join(s.dir, "keys.yaml"), "keys:\n  - {name: "+pageKeyName+", role: operator, sha256: "+sha(pageKey)+"}\n", 0o600)
	log, _ := newLogger(b)
	svc, err := New(Options{ConfigFile: s.config, Logger: log, Clock: clock.Real()})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		st := wire.DeviceStatus{V: 1, State: wire.StateOnline, Agent: "1.3.2", At: now.Unix() - int64(i),
			Tokens: []wire.TokenStatus{{Name: "video", KID: "primary", ExpiresAt: now.Unix() + int64(i%3600)}}}
		if i%9 == 0 {
			st.State = wire.StateOffline
		}
		p, err := wire.Encode(st)
		if err != nil {
			b.Fatal(err)
		}
		if !svc.Fleet().Observe(svc.topics.Status(simDeviceID(i)), p) {
			b.Fatalf("status %d not taken", i)
		}
	}
	srv := serveFront(b, svc)
	ctx := newBrowser(b, operatorAuth())
	var interactive, filter float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/fleet/")); err != nil {
			b.Fatal(err)
		}
		poll(b, ctx, "the page of 10,000 devices", `document.body.dataset.ready && document.body.dataset.devices === "10000" && document.querySelectorAll("#spacer .r").length > 0`)
		ms, err := strconv.ParseFloat(eval[string](b, ctx, `document.body.dataset.ready`), 64)
		if err != nil {
			b.Fatal(err)
		}
		interactive += ms
		took := eval[float64](b, ctx, `(() => {
			const t0 = performance.now(), q = document.getElementById("q");
			q.value = "cam-0999?"; q.dispatchEvent(new Event("input"));
			if (document.getElementById("shown").textContent !== "10 of 10000") throw new Error("filter: " + document.getElementById("shown").textContent);
			return performance.now() - t0;
		})()`)
		filter += took
	}
	b.StopTimer()
	b.ReportMetric(interactive/float64(b.N), "ms/interactive")
	b.ReportMetric(filter/float64(b.N), "ms/filter")
	rows := eval[int](b, ctx, `document.querySelectorAll("#spacer .r").length`)
	if rows > 100 {
		b.Fatalf("%d rows in the DOM: the table should draw only those in view", rows)
	}
}
