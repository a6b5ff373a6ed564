package agent

import (
	"slices"
	"strings"
	"testing"
)

// broker.url takes one URL, a comma-separated string or a YAML list; the
// first is BrokerConfig.URL, all are URLs in order.
func TestBrokerURLList(t *testing.T) {
	want := []string{"tcp://10.0.0.1:1883", "tcp://10.0.0.2:1883", "tcp://10.0.0.3:1883"}
	for name, url := range map[string]string{
		"comma string": "'tcp://10.0.0.1:1883, tcp://10.0.0.2:1883,tcp://10.0.0.3:1883'",
		"flow list":    "[tcp://10.0.0.1:1883, tcp://10.0.0.2:1883, tcp://10.0.0.3:1883]",
		"block list":   "\n    - tcp://10.0.0.1:1883\n    - tcp://10.0.0.2:1883\n    - tcp://10.0.0.3:1883",
	} {
		t.Run(name, func(t *testing.T) {
			y := "device_id: dev-1\nbroker:\n  url: " + url + "\n"
			c, err := ParseConfig(strings.NewReader(y), "/x")
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if !slices.Equal(c.Broker.URLs, want) || c.Broker.URL != want[0] {
				t.Fatalf("URLs %q URL %q, want %q", c.Broker.URLs, c.Broker.URL, want)
			}
		})
	}
	t.Run("single", func(t *testing.T) {
		c, err := ParseConfig(strings.NewReader("device_id: dev-1\nbroker: {url: tcp://h:1883}\n"), "/x")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.Broker.URLs, []string{"tcp://h:1883"}) {
			t.Fatalf("URLs %q", c.Broker.URLs)
		}
	})
}

// Every URL of the list is checked, and the error names which one;
// a password in a bad URL is not echoed.
func TestBrokerURLListErrors(t *testing.T) {
	for _, tc := range []struct{ name, url, key, want string }{
		{"second bad scheme", "[tcp://a:1883, http://b:1883]", "broker.url[1]", `scheme "http" is not tcp or ssl`},
		{"third lacks port", "'tcp://a:1883,tcp://b:1883,tcp://c'", "broker.url[2]", "lacks a host or port"},
		{"only commas", "','", "broker.url", "lists no URL"},
		{"empty list", "[]", "broker.url", "missing"},
		{"not a string", "[{a: b}]", "broker", "a broker URL is a string"},
		{"password redacted", "[tcp://a:1883, 'tcp://u:s3cret@b']", "broker.url[1]", "lacks a host or port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader("device_id: dev-1\nbroker: {url: "+tc.url+"}\n"), "/x")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}
