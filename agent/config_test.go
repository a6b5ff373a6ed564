package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/secretfile"
)

func TestShippedConfigParses(t *testing.T) {
	f, err := os.Open("../configs/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := ParseConfig(f, "/etc/agora-token-agent")
	if err != nil {
		t.Fatalf("configs/agent.yaml: %v", err)
	}
	if c.DeviceID != AutoDeviceID || c.DeviceIDPrefix != "cam-" {
		t.Errorf("device = %q prefix %q", c.DeviceID, c.DeviceIDPrefix)
	}
	if c.Broker.PasswordFile != "/etc/agora-token-agent/password" {
		t.Errorf("password_file = %q, want it resolved against the config dir", c.Broker.PasswordFile)
	}
	if c.Backoff.Max != time.Minute || c.Backoff.Jitter != 0.2 || c.Socket.Mode != 0o660 || c.Socket.MaxClients != 32 {
		t.Errorf("parsed %+v %+v", c.Backoff, c.Socket)
	}
}

// The config the .deb installs as /etc/agora-token-agent/agent.yaml
// (cross/deb.sh) must load as shipped: a broken conffile stops the agent
// on every board that installs the package.
func TestPackagedConfigParses(t *testing.T) {
	f, err := os.Open("../cross/deb/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := ParseConfig(f, "/etc/agora-token-agent")
	if err != nil {
		t.Fatalf("cross/deb/agent.yaml: %v", err)
	}
	for _, tc := range []struct{ key, got, want string }{
		{"device_id", c.DeviceID, AutoDeviceID},
		{"broker.password_file", c.Broker.PasswordFile, "/etc/agora-token-agent/password"},
		{"state_dir", c.StateDir, "/var/lib/agora-token-agent"},
		{"socket.path", c.Socket.Path, "/run/agora-token-agent/agent.sock"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.key, tc.got, tc.want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("device_id: dev-1\nbroker: {url: tcp://127.0.0.1:1883}\n"), "/x")
	if err != nil {
		t.Fatal(err)
	}
	if c.RenewBefore != 30*time.Second || c.RequestTimeout != 10*time.Second || c.StateDir != DefaultStateDir ||
		c.Socket.Path != DefaultSocketPath || c.Broker.KeepAlive != time.Minute || c.TopicRoot != "agora/v1" ||
		c.Backoff.Initial != time.Second || c.Backoff.Multiplier != 2 {
		t.Fatalf("defaults not filled: %+v", c)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	const ok = "device_id: dev-1\nbroker: {url: tcp://127.0.0.1:1883}\n"
	tests := []struct{ name, yaml, want string }{
		{"unknown top-level key", ok + "tokenz: []\n", "tokenz"},
		{"unknown nested key", "device_id: dev-1\nbroker:\n  url: tcp://127.0.0.1:1883\n  pasword_file: x\n", "broker.pasword_file"},
		{"bad duration", ok + "renew_before: soon\n", "renew_before"},
		{"negative duration", ok + "request_timeout: -1s\n", "request_timeout"},
		{"missing device id", "broker: {url: tcp://127.0.0.1:1883}\n", "device_id"},
		{"bad device id", "device_id: a/b\nbroker: {url: tcp://127.0.0.1:1883}\n", "device_id"},
		{"bad scheme", "device_id: d\nbroker: {url: ws://h:1}\n", "broker.url"},
		{"no source", "device_id: d\n", "broker"},
		{"both sources", ok + "http: {url: https://x}\n", "http"},
		{"cert without key", "device_id: d\nbroker: {url: ssl://h:8883, cert_file: c}\n", "broker.cert_file"},
		{"backoff max below initial", ok + "backoff: {initial: 10s, max: 1s}\n", "backoff.max"},
		{"jitter", ok + "backoff: {jitter: 1.5}\n", "backoff.jitter"},
		{"socket mode", ok + "socket: {mode: rw}\n", "socket.mode"},
		{"log level", ok + "log_level: loud\n", "log_level"},
		{"token name", ok + "tokens: [\"a b\"]\n", "tokens[0]"},
		{"plain http off loopback", "device_id: d\nhttp: {url: http://tokens.example.com}\n", "http.url"},
		{"token service without fetch", "device_id: d\nhttp: {url: https://x, kind: agora-token-service}\n", "http.fetch"},
		{"fetch role", "device_id: d\nhttp: {url: https://x, kind: agora-token-service, fetch: [{name: v, service: rtc, channel: c, uid: '1', role: king}]}\n", "http.fetch[0].role"},
		{"bad topic root", ok + "topic_root: a/+/b\n", "topic_root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tt.yaml), "/x")
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("s3cret-value\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("good", 0o640)
	write("open", 0o644)
	cfgPath := filepath.Join(dir, "agent.yaml")
	for _, tt := range []struct {
		file    string
		wantErr string
	}{{"good", ""}, {"open", "0644"}, {"missing", "no such file"}} {
		y := "device_id: d\nbroker: {url: tcp://127.0.0.1:1883, password_file: " + tt.file + "}\n"
		if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(cfgPath)
		if tt.wantErr == "" {
			if err != nil || c.Broker.password.Reveal() != "s3cret-value" {
				t.Fatalf("%s: err=%v", tt.file, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "broker.password_file") {
			t.Fatalf("%s: error %v, want one naming broker.password_file and %q", tt.file, err, tt.wantErr)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("error shows the secret: %v", err)
		}
	}
}

// A password written into a URL is never repeated by a config error.
func TestConfigURLErrorsHidePassword(t *testing.T) {
	for _, y := range []string{
		"device_id: dev-1\nbroker: {url: \"tcp://cam:hunter2@broker\"}\n",
		"device_id: dev-1\nbroker: {url: \"tcp://cam:hunter2@broker:1883/%zz\"}\n",
		"device_id: dev-1\nhttp: {url: \"https://cam:hunter2@issuer/%zz\"}\n",
	} {
		_, err := ParseConfig(strings.NewReader(y), "/x")
		if err == nil {
			t.Fatalf("%q: no error", y)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// newSecret is a secret made in memory, as ReadSecrets would read it.
func newSecret(v string) *secretfile.Secret {
	s := secretfile.NewSecret(v)
	return &s
}

// The agent words config errors as the issuer does (package configfile):
// the key, its line, the problem, never a Go type.
func TestConfigErrorWording(t *testing.T) {
	const ok = "device_id: dev-1\nbroker: {url: tcp://127.0.0.1:1883}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", ok + "renew_befor: 30s\n", `renew_befor (line 3): unknown key "renew_befor"`},
		{"unknown nested key", "device_id: dev-1\nbroker:\n  url: tcp://127.0.0.1:1883\n  pasword_file: x\n", `broker.pasword_file (line 4): unknown key "pasword_file"`},
		{"bad duration", ok + "renew_before: soon\n", `renew_before (line 3): "soon" is not a duration such as 30s, 5m or 1h`},
		{"validation carries the line", ok + "backoff:\n  jitter: 1.5\n", "backoff.jitter (line 4): 1.5 is not in [0, 1)"},
		{"validation of a key not written has no line", "broker: {url: tcp://127.0.0.1:1883}\n", "device_id: missing"},
		{"empty file", "# nothing\n", "file is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tc.yaml), "/x")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "agent.") || strings.Contains(err.Error(), "not found in type") {
				t.Fatalf("error names a Go type: %v", err)
			}
		})
	}
}

func TestConfigRenewWindow(t *testing.T) {
	const ok = "device_id: dev-1\nbroker: {url: tcp://127.0.0.1:1883}\n"
	for _, tc := range []struct {
		name, yaml string
		want       RenewWindow
		err        string
	}{
		{"default", ok, RenewWindow{0.6, 0.8}, ""},
		{"set", ok + "renew_window: [0.5, 0.75]\n", RenewWindow{0.5, 0.75}, ""},
		{"a point", ok + "renew_window: [0.7, 0.7]\n", RenewWindow{0.7, 0.7}, ""},
		{"one value", ok + "renew_window: [0.6]\n", RenewWindow{}, "renew_window (line 3): want two fractions"},
		{"three values", ok + "renew_window: [0.6, 0.7, 0.8]\n", RenewWindow{}, "renew_window (line 3): want two fractions"},
		{"a scalar", ok + "renew_window: 0.6\n", RenewWindow{}, "renew_window"},
		{"not numbers", ok + "renew_window: [soon, later]\n", RenewWindow{}, "renew_window"},
		{"percent, not fractions", ok + "renew_window: [60, 80]\n", RenewWindow{}, "renew_window (line 3): [60, 80]: both ends must be fractions"},
		{"zero start", ok + "renew_window: [0, 0.8]\n", RenewWindow{}, "renew_window"},
		{"end at expiry", ok + "renew_window: [0.6, 1]\n", RenewWindow{}, "renew_window"},
		{"reversed", ok + "renew_window: [0.8, 0.6]\n", RenewWindow{}, "renew_window (line 3): [0.8, 0.6]: the end is before the start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(strings.NewReader(tc.yaml), "/x")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.RenewWindow != tc.want {
				t.Fatalf("renew_window = %v, want %v", c.RenewWindow, tc.want)
			}
		})
	}
	// A Config built in Go gets the default window, and the same check.
	base := Config{DeviceID: "dev-1", Broker: &BrokerConfig{URL: "tcp://127.0.0.1:1883"}, StateDir: t.TempDir()}
	e, err := New(base, Deps{Transport: newFakeTransport()})
	if err != nil {
		t.Fatal(err)
	}
	if e.cfg.RenewWindow != (RenewWindow{DefaultRenewWindowStart, DefaultRenewWindowEnd}) {
		t.Fatalf("New: renew_window %v, want the default", e.cfg.RenewWindow)
	}
	base.RenewWindow = RenewWindow{0.9, 0.5}
	if _, err := New(base, Deps{Transport: newFakeTransport()}); err == nil || !strings.Contains(err.Error(), "config: renew_window") {
		t.Fatalf("New with a reversed window = %v, want an error naming renew_window", err)
	}
}
