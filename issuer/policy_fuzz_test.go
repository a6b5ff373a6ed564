package issuer

import (
	"strings"
	"testing"

	"agoratokens/configfile/configfiletest"
)

// FuzzParsePolicy: the policy parser never panics, and a policy it
// accepts answers Grants for any device without panicking.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("rules:\n  - match: \"cam-*\"\n    tokens:\n      video: {service: rtc, channel: \"{device}\", role: publisher}\n"), "cam-1")
	f.Fuzz(func(t *testing.T, src []byte, device string) {
		p, err := ParsePolicy(strings.NewReader(string(src)), Limits{})
		if err != nil {
			configfiletest.CheckWording(t, err)
			return
		}
		if len(p.Rules) == 0 {
			t.Fatal("accepted a policy without rules")
		}
		_, _ = p.Grants(device, nil)
	})
}
