package issuer

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The fleet page in a real browser: Debian's chromium, headless, driven
// over the DevTools protocol.

// fleetPageShot, when set, is where TestFleetPageInBrowser also saves its
// screenshot (the README's is made with
// `go test ./issuer -run TestFleetPageInBrowser -fleetpage.png ../docs/img/fleet-page.png`).
var fleetPageShot = flag.String("fleetpage.png", "", "also save the fleet page's screenshot to this file")

// browserTimeout bounds each wait in the browser: a failure guard only.
const browserTimeout = 60 * time.Second

// newBrowser starts headless chromium (a tab of it) until the test ends.
// With auth set, every request of the tab carries that Authorization.
func newBrowser(tb testing.TB, auth string) context.Context {
	tb.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		tb.Fatalf("the fleet page tests need Debian's chromium package (apt-get install chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 900))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tb.Cleanup(func() {
		_ = chromedp.Cancel(ctx)
		cancel()
		acancel()
	})
	err = chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if auth == "" {
			return nil
		}
		_, err := cdp.Call(ctx, t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Authorization": auth}})
		return err
	}))
	if err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	return ctx
}

func operatorAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(pageKeyName+":"+pageKey))
}

// poll waits until the JavaScript expression is truthy in the page.
func poll(tb testing.TB, ctx context.Context, what, expr string) {
	tb.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(browserTimeout))); err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
		tb.Fatalf("%s: %v\npage:\n%s", what, err, state)
	}
}

func eval[T any](tb testing.TB, ctx context.Context, expr string) T {
	tb.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot writes the page's PNG to $TEST_ARTIFACTS (or the test's
// temp dir) and, with -fleetpage.png, there too.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	writeArtifact(t, name, png)
	if *fleetPageShot != "" {
		if err := os.WriteFile(*fleetPageShot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFleetPageInBrowser: against a running issuer and 30 devices, the
// page's counts are fleet status --json's, a filter narrows the table, a
// rotation campaign's progress bar reaches complete without a reload,
// and without a key the browser gets no page.
func TestFleetPageInBrowser(t *testing.T) {
	const n = 30
	env := startPageEnv(t, n)
	ctx := newBrowser(t, operatorAuth())
	if err := chromedp.Do(ctx, chromedp.Navigate(env.url+"/fleet/")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "the page shows the fleet",
		`document.body.dataset.ready && document.getElementById("c-devices").textContent === "30" && document.querySelectorAll("#spacer .r").length > 0`)
	eval[bool](t, ctx, `window.notReloaded = true`)

	want := env.fleetStatusJSON(t)
	got := map[string]string{}
	for _, id := range []string{"c-devices", "c-online", "c-offline"} {
		got[id] = eval[string](t, ctx, `document.getElementById("`+id+`").textContent`)
	}
	if got["c-devices"] != strconv.Itoa(want.Totals.Devices) || got["c-online"] != strconv.Itoa(want.Totals.Online) ||
		got["c-offline"] != strconv.Itoa(want.Totals.Offline) {
		t.Fatalf("the page shows %v; fleet status --json totals %+v", got, want.Totals)
	}
	perKID := eval[string](t, ctx, `[...document.querySelectorAll("#kids li")].map(li => li.dataset.kid + "=" + li.lastChild.textContent + (li.classList.contains("active") ? "*" : "")).join(" ")`)
	if w := fmt.Sprintf("next=0 devices primary=%d devices*", want.Totals.PerKID["primary"]); perKID != w {
		t.Fatalf("tokens per kid on the page %q, want %q (the active one marked)", perKID, w)
	}
	if e, r := eval[string](t, ctx, `document.getElementById("c-expiring").textContent`), eval[string](t, ctx, `document.getElementById("c-refused").textContent`); e != "10" || r != "1" {
		t.Fatalf("expiring %s, refused %s; want 10 and 1", e, r)
	}

	// Filters narrow the table: offline, then a glob.
	if err := chromedp.Do(ctx, chromedp.Click("#f-offline")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "the offline filter", fmt.Sprintf(`document.getElementById("shown").textContent === "%d of 30" && document.querySelectorAll("#spacer .r").length === %d`,
		want.Totals.Offline, want.Totals.Offline))
	if err := chromedp.Do(ctx, chromedp.Click("#f-offline"), chromedp.SendKeys("#q", "cam-0001?")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "the glob filter", `document.getElementById("shown").textContent === "10 of 30" && [...document.querySelectorAll("#spacer .r")].every(r => /^cam-0001\d$/.test(r.dataset.device))`)

	// A device's detail.
	if err := chromedp.Do(ctx, chromedp.Click(`#spacer .r[data-device="cam-00014"]`)); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "the device detail", `document.getElementById("detail").open && document.getElementById("d-id").textContent === "cam-00014" && document.querySelectorAll("#d-tokens tr").length === 2 && document.getElementById("d-tokens").textContent.includes("rtc")`)
	if err := chromedp.Do(ctx, chromedp.Click("#detail .close")); err != nil {
		t.Fatal(err)
	}

	// A rotation: the progress bar goes to complete, live.
	cp := env.startCampaign(t)
	poll(t, ctx, "the campaign appears", `!document.getElementById("campaign").hidden && document.getElementById("cp-id").textContent.startsWith("`+cp.ID+`")`)
	poll(t, ctx, "the campaign completes", `document.getElementById("cp-bar").dataset.complete === "true" && document.getElementById("cp-bar").getAttribute("aria-valuenow") === "100"`)
	verdict := eval[string](t, ctx, `document.getElementById("cp-verdict").textContent`)
	if !eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Fatal("the page was reloaded")
	}
	if v := "complete; safe to disable primary at "; len(verdict) < len(v) || verdict[:len(v)] != v {
		t.Fatalf("verdict %q", verdict)
	}
	poll(t, ctx, "the table follows the rotation", `document.getElementById("c-devices").textContent === "30" && [...document.querySelectorAll("#kids li")].some(li => li.dataset.kid === "next" && li.lastChild.textContent === "26 devices")`)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`(q => { q.value = ""; q.dispatchEvent(new Event("input")) })(document.getElementById("q"))`)); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "fleet-page.png")

	// On a phone the page fits the screen's width.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "the phone layout", `document.documentElement.scrollWidth <= 390 && getComputedStyle(document.querySelector(".cards")).gridTemplateColumns.split(" ").length === 3`)
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	writeArtifact(t, "fleet-page-phone.png", png)

	// Without a key, the browser gets the refusal, not the page.
	bare := newBrowser(t, "")
	// Chromium answers the Basic challenge it cannot meet (headless, no
	// prompt) with ERR_INVALID_AUTH_CREDENTIALS; a browser that shows the
	// 401 body instead must not see the page either.
	res, err := chromedp.Run(bare, chromedp.NavigateResponse(env.url+"/fleet/"))
	if err == nil && res.Status != 401 {
		t.Fatalf("without a key: status %d", res.Status)
	}
	if err != nil && !strings.Contains(err.Error(), "ERR_INVALID_AUTH_CREDENTIALS") {
		t.Fatalf("without a key: %v", err)
	}
	if eval[bool](t, bare, `document.getElementById("c-devices") !== null || ((document.body && document.body.innerText) || "").includes("cam-0000")`) {
		t.Fatal("without a key the browser shows the fleet")
	}
}

// writeArtifact writes a file for the test log: to $TEST_ARTIFACTS, or
// the test's temp dir.
func writeArtifact(t *testing.T, name string, b []byte) {
	t.Helper()
	dir := os.Getenv("TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the fleet page: %s (%d bytes)", path, len(b))
}
