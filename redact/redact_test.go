package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"tcp://cam:s3cr3t@broker:1883", "tcp://cam:xxxxx@broker:1883"},
		{"tcp://cam@broker:1883", "tcp://cam@broker:1883"},
		{"https://issuer.example.com/v1/tokens?key=s3cr3t#frag", "https://issuer.example.com/v1/tokens"},
		{"https://u:s3cr3t@issuer/%zz", "(unparsable URL)"},
		{"ssl://broker:8883", "ssl://broker:8883"},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseURLErrorHidesURL(t *testing.T) {
	for _, raw := range []string{"tcp://cam:s3cr3t@broker:1883/%zz", "tcp://cam:s3cr3t@bro ker:1883", "tcp://cam:s3cr3t@broker:port"} {
		_, err := ParseURL(raw)
		if err == nil {
			t.Fatalf("%q parsed", raw)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("ParseURL error shows the password: %v", err)
		}
	}
	if u, err := ParseURL("tcp://h:1"); err != nil || u.Host != "h:1" {
		t.Fatalf("ParseURL(tcp://h:1) = %v, %v", u, err)
	}
}
