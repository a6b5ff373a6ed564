package issuer

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"agoratokens/internal/testbroker"
)

// TestBrokerConnectFailureSaysWhy: an issuer with a wrong broker password
// logs the broker's refusal at warn level, without the password, and
// retries with a growing backoff; one whose broker is down says that.
func TestBrokerConnectFailureSaysWhy(t *testing.T) {
	const wrong = "wrong-broker-password-5f2a9c"
	_, _, brokerYAML := mosquittoEnv(t)
	for _, tc := range []struct {
		name, broker, cause string
	}{
		{"wrong password", brokerYAML, `err="not Authorized"`},
		{"broker down", fmt.Sprintf("broker: {url: \"tcp://127.0.0.1:%d\", username: %s, password_file: broker.password}",
			testbroker.FreePort(t), issuerUser), "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := newLogger(t)
			s := writeSetup(t, tc.broker, "")
			writeFile(t, filepath.Join(s.dir, "broker.password"), wrong+"\n", 0o600)
			svc, err := New(Options{ConfigFile: s.config, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx) }()
			if !logs.Wait(waitTimeout, func(s string) bool { return strings.Contains(s, "failures=3") }) {
				t.Fatalf("no third connection failure logged:\n%s", logs.String())
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			text := logs.String()
			var waits []time.Duration
			for _, l := range strings.Split(text, "\n") {
				if !strings.Contains(l, "cannot connect to the broker; retrying") {
					continue
				}
				if !strings.Contains(l, "level=WARN") || !strings.Contains(l, tc.cause) {
					t.Errorf("the failure does not name its cause (%s): %s", tc.cause, l)
				}
				if strings.Contains(l, wrong) || strings.Contains(l, issuerPass) {
					t.Errorf("a password is in the log: %s", l)
				}
				ra := regexp.MustCompile(`retry_in=(\S+)`).FindStringSubmatch(l)
				if ra == nil {
					t.Fatalf("no retry_in: %s", l)
				}
				d, err := time.ParseDuration(ra[1])
				if err != nil {
					t.Fatal(err)
				}
				waits = append(waits, d)
			}
			if len(waits) != 3 || !(waits[0] < waits[1] && waits[1] < waits[2]) || waits[2] > connectMax {
				t.Errorf("retries wait %v: want three, growing, at most %v", waits, connectMax)
			}
		})
	}
}
