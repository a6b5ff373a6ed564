package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/internal/testbroker"
	"agoratokens/internal/testlog"
)

// TestAPIKeyCommands is the HTTP API's getting-started path: init --http
// enables it, apikey add prints a key once, serve accepts it, the token
// verifies with the certificate, and after apikey revoke and a SIGHUP the
// key is refused.
func TestAPIKeyCommands(t *testing.T) {
	t.Setenv("AGORA_APP_ID", "")
	t.Setenv("AGORA_APP_CERTIFICATE", "")
	dir := filepath.Join(t.TempDir(), "setup")
	broker := "127.0.0.1:" + strconv.Itoa(testbroker.FreePort(t))
	httpAddr := "127.0.0.1:" + strconv.Itoa(testbroker.FreePort(t))
	code, out, errOut := runCmd(t, context.Background(), "init", dir, "--listen", broker, "--http", httpAddr)
	if code != 0 || !strings.Contains(out, "apikey add web") {
		t.Fatalf("init --http: %d\n%s\n%s", code, out, errOut)
	}
	cfgPath := filepath.Join(dir, "issuer.yaml")
	keysPath := filepath.Join(dir, "apikeys.yaml")
	if st, err := os.Stat(keysPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("apikeys.yaml: %v %v", st, err)
	}

	code, out, errOut = runCmd(t, context.Background(), "apikey", "add", "web", "--config", cfgPath,
		"--channels", "room-*,lobby", "--uids", "1-999", "--services", "rtc,rtm", "--max-ttl", "30m", "--rate", "600/min")
	if code != 0 {
		t.Fatalf("apikey add: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	key := lines[len(lines)-1]
	if len(lines) != 1 || !strings.HasPrefix(key, "atk_") || len(key) < 40 {
		t.Fatalf("apikey add printed %q, want the key alone", out)
	}
	raw, _ := os.ReadFile(keysPath)
	if strings.Contains(string(raw), key) || strings.Contains(errOut, key) {
		t.Fatal("the key is stored or printed twice")
	}
	if code, _, errOut := runCmd(t, context.Background(), "apikey", "add", "web", "--config", cfgPath); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("second add: %d %s", code, errOut)
	}
	for _, bad := range [][]string{
		{"apikey", "add", "x", "--config", cfgPath, "--services", "video"},
		{"apikey", "add", "x", "--config", cfgPath, "--uids", "9-1"},
		{"apikey", "add", "x", "--config", cfgPath, "--rate", "fast"},
		{"apikey", "add", "bad name", "--config", cfgPath},
	} {
		if code, _, errOut := runCmd(t, context.Background(), bad...); code != 1 || errOut == "" {
			t.Errorf("%v: %d %s", bad, code, errOut)
		}
	}
	if code, _, _ := runCmd(t, context.Background(), "apikey", "list"); code != 2 {
		t.Errorf("list without --config: %d", code)
	}
	code, out, _ = runCmd(t, context.Background(), "apikey", "list", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "web") || !strings.Contains(out, "rtc,rtm") || !strings.Contains(out, "1-999") ||
		strings.Contains(out, key) || strings.Count(out, "\n") != 2 {
		t.Fatalf("apikey list: %d\n%s", code, out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var serveErr testlog.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgPath}, strings.NewReader(""), &bytes.Buffer{}, &serveErr)
	}()
	testlog.WaitForUnless(t, &serveErr, 15*time.Second, done, "http listening")
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+httpAddr+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := get("/rtc/room-7/publisher/uid/42/?expiry=600")
	var res struct{ RTCToken string }
	if err := json.Unmarshal([]byte(body), &res); err != nil || status != 200 {
		t.Fatalf("rtc: %d %s", status, body)
	}
	certRaw, _ := os.ReadFile(filepath.Join(dir, "app.cert"))
	cert := strings.TrimSpace(string(certRaw))
	tok, err := accesstoken.Parse(res.RTCToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Verify(cert); err != nil {
		t.Fatalf("token does not verify with app.cert: %v", err)
	}
	rtc := tok.Service(accesstoken.ServiceRTC)
	if tok.Expire != 600 || rtc == nil || rtc.Channel != "room-7" || rtc.UID != "42" {
		t.Fatalf("token %+v", tok)
	}
	// token inspect, as an operator would check it.
	code, out, errOut = runCmd(t, context.Background(), "token", "inspect", "--compact", res.RTCToken)
	if code != 0 || !strings.Contains(out, `"channel":"room-7"`) || !strings.Contains(out, `"uid":"42"`) || !strings.Contains(out, `"expire":600`) {
		t.Fatalf("token inspect: %d %s %s", code, out, errOut)
	}
	if status, body := get("/rtc/room-7/publisher/uid/4242/"); status != 403 {
		t.Fatalf("uid outside the grant: %d %s", status, body)
	}

	code, out, _ = runCmd(t, context.Background(), "apikey", "revoke", "web", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "Revoked") {
		t.Fatalf("revoke: %d %s", code, out)
	}
	if code, _, errOut := runCmd(t, context.Background(), "apikey", "revoke", "web", "--config", cfgPath); code != 1 || !strings.Contains(errOut, "no key named") {
		t.Fatalf("second revoke: %d %s", code, errOut)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testlog.WaitForUnless(t, &serveErr, 15*time.Second, done, "msg=reloaded")
	if status, body := get("/rtm/5/"); status != 401 {
		t.Fatalf("revoked key after SIGHUP: %d %s", status, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d: %s", code, serveErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if logs := serveErr.String(); strings.Contains(logs, cert) || strings.Contains(logs, key) {
		t.Fatal("serve logged the certificate or the key")
	}
}
