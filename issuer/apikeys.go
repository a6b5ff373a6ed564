package issuer

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"agoratokens/accesstoken"
	"agoratokens/atomicfile"
	"agoratokens/configfile"
	"agoratokens/wire"
)

// apiKeys authenticates HTTP callers. The file (http.api_keys_file)
// holds only SHA-256 hashes of generated keys. An entry is one of two
// kinds:
//
//	keys:
//	  # a named key with a grant of its own (what `apikey add` writes)
//	  - name: web-backend
//	    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	    channels: ["room-*"]        # globs; "*" also allows the wildcard channel
//	    uids: "1000-1999,42"        # numeric identities allowed (empty: any)
//	    services: [rtc, rtm]        # default: all four
//	    max_ttl: 1h                 # default: limits.max_ttl
//	    rate: 600/min               # default: http.key_rate
//	  # a key acting as a device: the policy decides for it
//	  - principal: ops-console
//	    sha256: …
//
// `agora-token-issuer apikey add|list|revoke` edits the file.
type apiKeys struct {
	entries []apiKey
}

type apiKey struct {
	name      string    // the key's name (the principal for a policy key)
	principal string    // policy key: the device id the policy applies to
	grant     *keyGrant // named key: what it may mint (nil for a policy key)
	rate      RateConfig
	hash      [sha256.Size]byte
	operator  bool   // role operator: may read the fleet, mints nothing
	limitID   string // its bucket in the key limiter: "key:" + name
}

// RoleOperator is the role of a key that may read the fleet (the fleet
// page and its API) and mint nothing.
const RoleOperator = "operator"

// keyGrant bounds what a named key (or an anonymous caller) may mint
// through the HTTP API.
type keyGrant struct {
	channels []string // path.Match globs; empty: any channel but the wildcard
	uids     []uidRange
	services []string
	maxTTL   time.Duration // 0: limits.max_ttl
}

// uidRange is an inclusive range of numeric identities.
type uidRange struct{ lo, hi uint32 }

// Services a key's grant may name.
var grantServices = []string{ServiceRTC, ServiceRTM, ServiceChat, ServiceEducation}

// apiKeyEntry is one entry of the keys file.
type apiKeyEntry struct {
	Name      string   `yaml:"name,omitempty"`
	Principal string   `yaml:"principal,omitempty"`
	Role      string   `yaml:"role,omitempty"`
	SHA256    string   `yaml:"sha256"`
	Channels  []string `yaml:"channels,omitempty,flow"`
	UIDs      string   `yaml:"uids,omitempty"`
	Services  []string `yaml:"services,omitempty,flow"`
	MaxTTL    string   `yaml:"max_ttl,omitempty"`
	Rate      string   `yaml:"rate,omitempty"`
	Created   string   `yaml:"created,omitempty"`
}

type apiKeysFile struct {
	Keys []apiKeyEntry `yaml:"keys"`
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
	f, err := decodeAPIKeysFile(path, b)
	if err != nil {
		return nil, err
	}
	k, _ := f.check() // decodeAPIKeysFile ran check
	return k, nil
}

func decodeAPIKeysFile(path string, b []byte) (*apiKeysFile, error) {
	var f apiKeysFile
	_, err := configfile.Parse(bytes.NewReader(b), &f, func() error {
		_, err := f.check()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("api keys %s: %w", path, err)
	}
	return &f, nil
}

// check validates the decoded file.
func (f *apiKeysFile) check() (*apiKeys, error) {
	k := &apiKeys{}
	names := map[string]bool{}
	for i, e := range f.Keys {
		key := fmt.Sprintf("keys[%d]", i)
		ak, err := e.check(key)
		if err != nil {
			return nil, err
		}
		if names[ak.name] {
			return nil, fmt.Errorf("%s: the name %q is used twice", key, ak.name)
		}
		names[ak.name] = true
		ak.limitID = "key:" + ak.name
		for _, prev := range k.entries {
			if bytes.Equal(prev.hash[:], ak.hash[:]) {
				return nil, fmt.Errorf("%s.sha256: the same key as %q", key, prev.name)
			}
		}
		k.entries = append(k.entries, ak)
	}
	return k, nil
}

func (e *apiKeyEntry) check(key string) (apiKey, error) {
	var ak apiKey
	h, err := hex.DecodeString(e.SHA256)
	if err != nil || len(h) != sha256.Size {
		return ak, fmt.Errorf("%s.sha256: not 64 hex characters (the SHA-256 of the key)", key)
	}
	copy(ak.hash[:], h)
	if e.Rate != "" {
		if ak.rate, err = ParseRate(e.Rate); err != nil {
			return ak, fmt.Errorf("%s.rate: %w", key, err)
		}
	}
	switch e.Role {
	case "":
	case RoleOperator:
		if e.Principal != "" || len(e.Channels) > 0 || e.UIDs != "" || len(e.Services) > 0 || e.MaxTTL != "" {
			return ak, fmt.Errorf("%s: an operator key mints nothing; it takes a name, no principal or grant", key)
		}
		if err := wire.ValidateName("name", e.Name); err != nil {
			return ak, fmt.Errorf("%s.name: %w", key, err)
		}
		ak.name, ak.operator = e.Name, true
		return ak, nil
	default:
		return ak, fmt.Errorf("%s.role: %q is not a role (the only one is %q; absent: a key that mints)", key, e.Role, RoleOperator)
	}
	if e.Principal != "" {
		if err := wire.ValidateDeviceID(e.Principal); err != nil {
			return ak, fmt.Errorf("%s.principal: %w", key, err)
		}
		if len(e.Channels) > 0 || e.UIDs != "" || len(e.Services) > 0 || e.MaxTTL != "" {
			return ak, fmt.Errorf("%s: a principal key takes its grant from the policy; channels, uids, services and max_ttl need a named key instead", key)
		}
		ak.principal, ak.name = e.Principal, e.Principal
		if e.Name != "" && e.Name != e.Principal {
			return ak, fmt.Errorf("%s.name: a principal key is named by its principal", key)
		}
		return ak, nil
	}
	if e.Name == "" {
		return ak, fmt.Errorf("%s: needs a name (a key with its own grant) or a principal (a key the policy decides for)", key)
	}
	if err := wire.ValidateName("name", e.Name); err != nil {
		return ak, fmt.Errorf("%s.name: %w", key, err)
	}
	ak.name = e.Name
	g, err := newKeyGrant(key+".", e.Channels, e.UIDs, e.Services, e.MaxTTL)
	if err != nil {
		return ak, err
	}
	ak.grant = g
	return ak, nil
}

// newKeyGrant checks a grant's parts; prefix names their keys in errors.
func newKeyGrant(prefix string, channels []string, uids string, services []string, maxTTL string) (*keyGrant, error) {
	g := &keyGrant{}
	for i, c := range channels {
		if c == "" || len(c) > 4*accesstoken.MaxChannelLen {
			return nil, fmt.Errorf("%schannels[%d]: %q is not a channel glob", prefix, i, c)
		}
		if _, err := path.Match(c, "x"); err != nil {
			return nil, fmt.Errorf("%schannels[%d]: %q: %w", prefix, i, c, err)
		}
		g.channels = append(g.channels, c)
	}
	var err error
	if g.uids, err = ParseUIDRanges(uids); err != nil {
		return nil, fmt.Errorf("%suids: %w", prefix, err)
	}
	for i, s := range services {
		if !slices.Contains(grantServices, s) {
			return nil, fmt.Errorf("%sservices[%d]: %q is not one of %s", prefix, i, s, strings.Join(grantServices, ", "))
		}
		if !slices.Contains(g.services, s) {
			g.services = append(g.services, s)
		}
	}
	if len(g.services) == 0 {
		g.services = slices.Clone(grantServices)
	}
	if maxTTL != "" {
		d, err := time.ParseDuration(maxTTL)
		if err != nil || d < time.Second || d > accesstoken.MaxExpire*time.Second || d%time.Second != 0 {
			return nil, fmt.Errorf("%smax_ttl: %q is not whole seconds between 1s and 24h", prefix, maxTTL)
		}
		g.maxTTL = d
	}
	return g, nil
}

// ParseUIDRanges reads a list of numeric identities and inclusive
// ranges: "42", "1000-1999", "1-9,42,100-199". Empty means any.
func ParseUIDRanges(s string) ([]uidRange, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []uidRange
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number or a range like 1000-1999", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b < a {
				return nil, fmt.Errorf("%q is not a range like 1000-1999", part)
			}
		}
		out = append(out, uidRange{uint32(a), uint32(b)})
	}
	return out, nil
}

// ParseRate reads a rate limit "N/min" (also "N/s", "N/h"). The burst is
// ten seconds' worth, at least 1.
func ParseRate(s string) (RateConfig, error) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseUint(n, 10, 31)
	if !ok || err != nil || v == 0 {
		return RateConfig{}, fmt.Errorf("%q is not a rate like 600/min", s)
	}
	var perMin uint64
	switch unit {
	case "s", "sec":
		perMin = v * 60
	case "min", "m":
		perMin = v
	case "h", "hour":
		perMin = max(1, v/60)
	default:
		return RateConfig{}, fmt.Errorf("%q: the unit is not s, min or h", s)
	}
	if perMin > 1<<30 {
		return RateConfig{}, fmt.Errorf("%q is too high a rate", s)
	}
	return RateConfig{PerMinute: int(perMin), Burst: int(max(1, perMin/6))}, nil
}

// lookup returns the entry of key. It compares against every entry in
// constant time, so the answer's timing says nothing about the keys.
func (k *apiKeys) lookup(key string) (string, bool) {
	e := k.find(key)
	if e == nil {
		return "", false
	}
	return e.principal, true
}

func (k *apiKeys) find(key string) *apiKey {
	if k == nil || key == "" {
		return nil
	}
	h := sha256.Sum256([]byte(key))
	found := -1
	for i := range k.entries {
		if subtle.ConstantTimeCompare(h[:], k.entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil
	}
	return &k.entries[found]
}

// allowsChannel reports whether the grant covers channel (or an
// education room). The wildcard channel needs a "*" glob of its own.
func (g *keyGrant) allowsChannel(ch string) bool {
	if len(g.channels) == 0 {
		return ch != accesstoken.WildcardChannel
	}
	for _, glob := range g.channels {
		if ch == accesstoken.WildcardChannel && glob != accesstoken.WildcardChannel {
			continue
		}
		if ok, _ := path.Match(glob, ch); ok {
			return true
		}
	}
	return false
}

// allowsIdentity reports whether the grant covers a user identity (an
// RTC uid or account, an RTM, Chat or education user). With uids set,
// only decimal identities in those ranges pass; uid 0 ("any uid", packed
// as "") passes only when 0 is in a range.
func (g *keyGrant) allowsIdentity(id string) bool {
	if len(g.uids) == 0 {
		return true
	}
	if id == "" {
		id = "0"
	}
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != id {
		return false
	}
	for _, r := range g.uids {
		if uint32(n) >= r.lo && uint32(n) <= r.hi {
			return true
		}
	}
	return false
}

func (g *keyGrant) allowsService(s string) bool { return slices.Contains(g.services, s) }

// APIKeySpec is what `apikey add` asks for; empty fields take the
// defaults (any channel but the wildcard, any identity, every service,
// limits.max_ttl, http.key_rate).
type APIKeySpec struct {
	Name     string
	Role     string // "" or RoleOperator
	Channels []string
	UIDs     string
	Services []string
	MaxTTL   time.Duration
	Rate     string
}

// APIKeyInfo describes a key for `apikey list`: never the key or its
// hash.
type APIKeyInfo struct {
	Name, Principal, Role, UIDs, MaxTTL, Rate, Created string
	Channels, Services                                 []string
}

// readKeysFile reads path, an absent file being an empty one.
func readKeysFile(path string) (*apiKeysFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &apiKeysFile{}, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeAPIKeysFile(path, b)
}

const keysFileHeader = "# API keys of the issuer's HTTP token API: SHA-256 hashes only.\n" +
	"# Edit with agora-token-issuer apikey add|list|revoke, then reload (SIGHUP).\n"

func writeKeysFile(path string, f *apiKeysFile) error {
	if _, err := f.check(); err != nil {
		return err
	}
	b, err := yaml.Marshal(f)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append([]byte(keysFileHeader), b...), 0o600)
}

// AddAPIKey generates a key, stores its hash under spec.Name in the keys
// file at path (created if absent) and returns the key, which is shown
// nowhere else.
func AddAPIKey(path string, spec APIKeySpec, now time.Time) (string, error) {
	f, err := readKeysFile(path)
	if err != nil {
		return "", err
	}
	for _, e := range f.Keys {
		if e.Name == spec.Name || e.Principal == spec.Name {
			return "", fmt.Errorf("a key named %q exists; revoke it first", spec.Name)
		}
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	key := "atk_" + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(key))
	e := apiKeyEntry{Name: spec.Name, Role: spec.Role, SHA256: hex.EncodeToString(sum[:]), Channels: spec.Channels,
		UIDs: spec.UIDs, Services: spec.Services, Rate: spec.Rate, Created: now.UTC().Format(time.RFC3339)}
	if spec.MaxTTL != 0 {
		e.MaxTTL = spec.MaxTTL.String()
	}
	if _, err := e.check("the new key"); err != nil {
		return "", err
	}
	f.Keys = append(f.Keys, e)
	if err := writeKeysFile(path, f); err != nil {
		return "", err
	}
	return key, nil
}

// ListAPIKeys describes the keys in the file at path.
func ListAPIKeys(path string) ([]APIKeyInfo, error) {
	f, err := readKeysFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]APIKeyInfo, 0, len(f.Keys))
	for _, e := range f.Keys {
		name := e.Name
		if name == "" {
			name = e.Principal
		}
		out = append(out, APIKeyInfo{Name: name, Principal: e.Principal, Role: e.Role, UIDs: e.UIDs, MaxTTL: e.MaxTTL,
			Rate: e.Rate, Created: e.Created, Channels: e.Channels, Services: e.Services})
	}
	return out, nil
}

// RevokeAPIKey removes the key named name from the file at path.
func RevokeAPIKey(path, name string) error {
	f, err := readKeysFile(path)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(f.Keys, func(e apiKeyEntry) bool { return e.Name == name || e.Principal == name })
	if i < 0 {
		return fmt.Errorf("no key named %q", name)
	}
	f.Keys = slices.Delete(f.Keys, i, i+1)
	return writeKeysFile(path, f)
}
