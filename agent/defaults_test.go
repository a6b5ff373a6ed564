package agent

import (
	"strings"
	"testing"
	"time"
)

// A Config built in Go and a config file that sets nothing get the same
// defaults (the file path once gave jitter 0.2 and New gave 0).
func TestDefaultsAgreeBetweenFileAndNew(t *testing.T) {
	dir := t.TempDir()
	fromFile, err := ParseConfig(strings.NewReader("device_id: dev-1\nbroker: {url: tcp://127.0.0.1:1883}\nstate_dir: "+dir+"\n"), "/x")
	if err != nil {
		t.Fatal(err)
	}
	inGo := Config{DeviceID: "dev-1", Broker: &BrokerConfig{URL: "tcp://127.0.0.1:1883"}, StateDir: dir}
	var got [2]Config
	for i, c := range []Config{*fromFile, inGo} {
		e, err := New(c, Deps{Transport: newFakeTransport()})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		got[i] = e.cfg
	}
	want := BackoffConfig{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax,
		Multiplier: DefaultBackoffMultiplier, Jitter: DefaultBackoffJitter}
	for i, c := range got {
		src := [...]string{"file", "Go"}[i]
		if c.Backoff != want {
			t.Errorf("%s: backoff %+v, want %+v", src, c.Backoff, want)
		}
		if c.RenewBefore != DefaultRenewBefore || c.RenewMinInterval != DefaultRenewMinInterval ||
			c.RequestTimeout != DefaultRequestTimeout || c.TopicRoot != DefaultTopicRoot ||
			c.Broker.KeepAlive != DefaultKeepAlive {
			t.Errorf("%s: defaults not filled: %+v", src, c)
		}
	}
}

// jitter: 0 in the file, or NoJitter in Go, means no randomisation (and
// is not replaced by the default).
func TestNoJitter(t *testing.T) {
	dir := t.TempDir()
	fromFile, err := ParseConfig(strings.NewReader("device_id: dev-1\nbroker: {url: tcp://127.0.0.1:1883}\nbackoff: {jitter: 0}\nstate_dir: "+dir+"\n"), "/x")
	if err != nil {
		t.Fatal(err)
	}
	inGo := Config{DeviceID: "dev-1", Broker: &BrokerConfig{URL: "tcp://127.0.0.1:1883"}, StateDir: dir,
		Backoff: BackoffConfig{Jitter: NoJitter}}
	for _, c := range []Config{*fromFile, inGo} {
		e, err := New(c, Deps{Transport: newFakeTransport()})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if j := e.cfg.Backoff.randomization(); j != 0 {
			t.Errorf("jitter %v, want 0", j)
		}
	}
}

func TestNewValidatesConfig(t *testing.T) {
	base := func() Config {
		return Config{DeviceID: "dev-1", Broker: &BrokerConfig{URL: "tcp://127.0.0.1:1883"}, StateDir: t.TempDir()}
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"negative timeout", func(c *Config) { c.RequestTimeout = -time.Second }, "request_timeout: must be positive"},
		{"multiplier below 1", func(c *Config) { c.Backoff.Multiplier = 0.5 }, "backoff.multiplier"},
		{"jitter over 1", func(c *Config) { c.Backoff.Jitter = 1.5 }, "backoff.jitter"},
		{"max under initial", func(c *Config) { c.Backoff.Initial, c.Backoff.Max = time.Minute, time.Second }, "backoff.max"},
		{"bad token name", func(c *Config) { c.Tokens = []string{"vi deo"} }, "tokens[0]"},
		{"duplicate token", func(c *Config) { c.Tokens = []string{"a", "a"} }, "tokens[1]"},
		{"bad topic root", func(c *Config) { c.TopicRoot = "a/#" }, "topic_root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.change(&c)
			_, err := New(c, Deps{Transport: newFakeTransport()})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}
