// Package configfiletest checks, in the tests of every config loader,
// that an error speaks as package configfile words it.
package configfiletest

import (
	"regexp"
	"strings"
	"testing"
)

// quoted is a Go-quoted string: what a user wrote, shown back.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// CheckWording fails t when err, outside the values it quotes, shows
// what users should not see: a Go type, a YAML tag, yaml.v3's own
// phrasing.
func CheckWording(t testing.TB, err error) {
	t.Helper()
	msg := quoted.ReplaceAllString(err.Error(), `""`)
	for _, bad := range []string{"not found in type", "cannot unmarshal", "!!", "time.Duration", "time.Time", "yaml: line", "yaml: unmarshal"} {
		if strings.Contains(msg, bad) {
			t.Fatalf("error shows %q: %v", bad, err)
		}
	}
	if strings.HasPrefix(msg, "yaml: ") {
		t.Fatalf("error shows yaml.v3's prefix: %v", err)
	}
}
