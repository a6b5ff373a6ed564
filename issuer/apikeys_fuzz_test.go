package issuer

import (
	"testing"

	"agoratokens/configfile/configfiletest"
)

// FuzzParseAPIKeys: the API keys parser never panics, and every key it
// accepts has a principal and a distinct hash.
func FuzzParseAPIKeys(f *testing.F) {
	f.Add([]byte("keys:\n  - principal: ops-console\n    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		k, err := parseAPIKeys("api-keys", src)
		if err != nil {
			configfiletest.CheckWording(t, err)
			return
		}
		seen := map[[32]byte]bool{}
		for _, e := range k.entries {
			if e.principal == "" || seen[e.hash] {
				t.Fatalf("accepted entry %+v", e)
			}
			seen[e.hash] = true
		}
	})
}
