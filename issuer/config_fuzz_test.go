package issuer

import (
	"strings"
	"testing"

	"agoratokens/configfile/configfiletest"
)

// FuzzParseConfig: the issuer's config parser never panics, what it
// accepts has its defaults filled, and its errors speak of keys, not of
// Go types.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(minimalConfig))
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := ParseConfig(strings.NewReader(string(src)))
		if err != nil {
			configfiletest.CheckWording(t, err)
			return
		}
		if c.ActiveCertificate == "" || c.TopicRoot == "" || c.Limits.MaxTTL <= 0 || c.Limits.DefaultTTL > c.Limits.MaxTTL || c.PolicyFile == "" {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
	})
}
