package issuer

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"

	"agoratokens/configfile"
	"agoratokens/wire"
)

// apiKeys authenticates HTTP callers. The file (http.api_keys_file)
// holds only SHA-256 hashes of generated keys, each acting as a
// principal the policy applies to (a device id):
//
//	keys:
//	  - principal: ops-console
//	    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// Make a key with `head -c 24 /dev/urandom | base64` and its hash with
// `printf %s KEY | sha256sum`.
type apiKeys struct {
	entries []apiKey
}

type apiKey struct {
	principal string
	hash      [sha256.Size]byte
}

type apiKeysFile struct {
	Keys []struct {
		Principal string `yaml:"principal"`
		SHA256    string `yaml:"sha256"`
	} `yaml:"keys"`
}

// loadAPIKeys reads and checks the API keys file.
func loadAPIKeys(path string) (*apiKeys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("http.api_keys_file: %w", err)
	}
	return parseAPIKeys(path, b)
}

func parseAPIKeys(path string, b []byte) (*apiKeys, error) {
	var f apiKeysFile
	var k *apiKeys
	_, err := configfile.Parse(bytes.NewReader(b), &f, func() (err error) {
		k, err = f.check()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("api keys %s: %w", path, err)
	}
	return k, nil
}

// check validates the decoded file.
func (f *apiKeysFile) check() (*apiKeys, error) {
	k := &apiKeys{}
	for i, e := range f.Keys {
		key := fmt.Sprintf("keys[%d]", i)
		if err := wire.ValidateDeviceID(e.Principal); err != nil {
			return nil, fmt.Errorf("%s.principal: %w", key, err)
		}
		h, err := hex.DecodeString(e.SHA256)
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("%s.sha256: not 64 hex characters (the SHA-256 of the key)", key)
		}
		var ak apiKey
		ak.principal = e.Principal
		copy(ak.hash[:], h)
		for _, prev := range k.entries {
			if bytes.Equal(prev.hash[:], ak.hash[:]) {
				return nil, fmt.Errorf("%s.sha256: the same key as principal %q", key, prev.principal)
			}
		}
		k.entries = append(k.entries, ak)
	}
	return k, nil
}

// lookup returns the principal of key. It compares against every entry
// in constant time, so the answer's timing says nothing about the keys.
func (k *apiKeys) lookup(key string) (string, bool) {
	if k == nil || key == "" {
		return "", false
	}
	h := sha256.Sum256([]byte(key))
	found := -1
	for i := range k.entries {
		if subtle.ConstantTimeCompare(h[:], k.entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return k.entries[found].principal, true
}
