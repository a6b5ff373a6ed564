package issuer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/configfile"
	"agoratokens/wire"
)

// Policy decides which device may hold which token. It is its own YAML
// file:
//
//	deny: ["cam-stolen-*"]          # checked first
//	rules:                          # first match wins; no match: denied
//	  - match: "cam-*"              # path.Match glob on the device id
//	    tokens:
//	      video:  {service: rtc, channel: "cam-{device}", uid: "{uid}", role: publisher, ttl: 1h}
//	      signal: {service: rtm, user: "{device}"}
//
// A Policy is immutable once loaded and safe for concurrent use.
type Policy struct {
	Deny  []string `yaml:"deny"`
	Rules []Rule   `yaml:"rules"`
}

// Rule grants the named tokens to devices whose id matches Match.
type Rule struct {
	Match  string                   `yaml:"match"`
	Tokens map[string]TokenTemplate `yaml:"tokens"`
}

// Token services a policy can grant.
const (
	ServiceRTC       = "rtc"
	ServiceRTM       = "rtm"
	ServiceChat      = "chat"
	ServiceEducation = "education"
)

// TokenTemplate describes one token. Strings may use {device} (the
// device id) and, in uid, {uid} (DeviceUID of the id); other braces are
// errors.
//
//	rtc:       channel, uid (default "{uid}"; digits: a numeric uid,
//	           "0" any uid; otherwise a user account), role (publisher or
//	           subscriber, default subscriber)
//	rtm:       user
//	chat:      kind user (default; needs user) or app
//	education: kind room_user (room, user, role: an integer), user
//	           (user) or app
//
// ttl defaults to limits.default_ttl and may not exceed limits.max_ttl.
// The wildcard channel "*" is granted only when written as is.
type TokenTemplate struct {
	Service string        `yaml:"service"`
	Kind    string        `yaml:"kind"`
	Channel string        `yaml:"channel"`
	UID     string        `yaml:"uid"`
	Role    string        `yaml:"role"`
	User    string        `yaml:"user"`
	Room    string        `yaml:"room"`
	TTL     time.Duration `yaml:"ttl"`
}

// Grant is the policy's answer for one token of one device: the template
// with the device filled in. The signer turns it into a token.
type Grant struct {
	Name    string
	Service string
	Kind    string // chat: user|app; education: room_user|user|app
	Channel string // rtc channel
	UID     string // rtc uid or account as packed ("" = uid 0, any)
	Role    string // rtc: publisher|subscriber; education: integer
	User    string // rtm, chat and education user
	Room    string // education room
	TTL     time.Duration
}

// DecisionError is a refusal: Code is wire.CodeForbidden or
// wire.CodeInvalidRequest and Message may be sent to the device.
type DecisionError struct {
	Code    string
	Message string
}

func (e *DecisionError) Error() string { return e.Code + ": " + e.Message }

func forbidden(format string, a ...any) error {
	return &DecisionError{Code: wire.CodeForbidden, Message: fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) error {
	return &DecisionError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf(format, a...)}
}

// DeviceUID is the stable non-zero RTC uid of a device: the first four
// bytes of SHA-256(device id), big-endian, with 0 mapped to 1.
func DeviceUID(device string) uint32 {
	sum := sha256.Sum256([]byte(device))
	if u := binary.BigEndian.Uint32(sum[:4]); u != 0 {
		return u
	}
	return 1
}

// Grants returns the tokens device may hold among names (all of its
// rule's tokens, sorted by name, when names is empty), or a
// *DecisionError: forbidden when the device is denied, matches no rule or
// asks for a token another rule grants; invalid_request when it asks for
// a name no rule knows.
func (p *Policy) Grants(device string, names []string) ([]Grant, error) {
	if err := wire.ValidateDeviceID(device); err != nil {
		return nil, invalid("%v", err)
	}
	for _, d := range p.Deny {
		if ok, _ := path.Match(d, device); ok {
			return nil, forbidden("device %q is denied by the policy", device)
		}
	}
	var rule *Rule
	for i := range p.Rules {
		if ok, _ := path.Match(p.Rules[i].Match, device); ok {
			rule = &p.Rules[i]
			break
		}
	}
	if rule == nil {
		return nil, forbidden("no policy rule grants device %q any token", device)
	}
	if len(names) == 0 {
		for n := range rule.Tokens {
			names = append(names, n)
		}
		slices.Sort(names)
	}
	grants := make([]Grant, 0, len(names))
	for i, n := range names {
		if slices.Contains(names[:i], n) {
			continue
		}
		t, ok := rule.Tokens[n]
		if !ok {
			if p.knows(n) {
				return nil, forbidden("device %q may not hold token %q", device, n)
			}
			return nil, invalid("unknown token name %q", n)
		}
		g, err := t.expand(n, device)
		if err != nil {
			return nil, forbidden("token %q for device %q: %v", n, device, err)
		}
		grants = append(grants, g)
	}
	return grants, nil
}

// knows reports whether any rule grants a token named n.
func (p *Policy) knows(n string) bool {
	for i := range p.Rules {
		if _, ok := p.Rules[i].Tokens[n]; ok {
			return true
		}
	}
	return false
}

// expand fills the template in for device and checks the result.
func (t *TokenTemplate) expand(name, device string) (Grant, error) {
	r := strings.NewReplacer("{device}", device, "{uid}", strconv.FormatUint(uint64(DeviceUID(device)), 10))
	g := Grant{
		Name: name, Service: t.Service, Kind: t.Kind, Role: t.Role, TTL: t.TTL,
		Channel: r.Replace(t.Channel), UID: r.Replace(t.UID),
		User: r.Replace(t.User), Room: r.Replace(t.Room),
	}
	switch g.Service {
	case ServiceRTC:
		if g.UID == "0" {
			g.UID = ""
		}
		if g.Channel != "*" {
			if err := accesstoken.ValidateChannel(g.Channel); err != nil {
				return Grant{}, err
			}
		}
		return g, accesstoken.ValidateAccount("uid", g.UID)
	case ServiceRTM, ServiceChat, ServiceEducation:
		if err := accesstoken.ValidateAccount("user", g.User); err != nil {
			return Grant{}, err
		}
		return g, accesstoken.ValidateAccount("room", g.Room)
	}
	return g, nil
}

// LoadPolicy reads and validates a policy file against the limits.
func LoadPolicy(file string, limits Limits) (*Policy, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o002 != 0 {
		return nil, fmt.Errorf("policy_file: %s has mode %04o: any user of this host could rewrite who gets which token (chmod o-w %s)", file, st.Mode().Perm(), file)
	}
	p, err := ParsePolicy(bytes.NewReader(b), limits)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", file, err)
	}
	return p, nil
}

// ParsePolicy decodes a policy (unknown keys are errors), fills each
// token's ttl from limits.DefaultTTL and validates it: globs, services
// and their fields, placeholders, lifetimes, and that every template,
// filled in for a sample device, signs.
func ParsePolicy(r io.Reader, limits Limits) (*Policy, error) {
	var p Policy
	_, err := configfile.Parse(r, &p, func() error {
		if err := limits.fill(); err != nil {
			return err
		}
		return p.check(limits)
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// check validates a decoded policy and fills its defaults; its errors
// start with the key they are about.
func (p *Policy) check(limits Limits) error {
	for i, d := range p.Deny {
		if err := checkGlob(d); err != nil {
			return fmt.Errorf("deny[%d]: %w", i, err)
		}
	}
	if len(p.Rules) == 0 {
		return errors.New("rules: missing; with no rule every device is refused")
	}
	for i := range p.Rules {
		rule := &p.Rules[i]
		key := fmt.Sprintf("rules[%d]", i)
		if err := checkGlob(rule.Match); err != nil {
			return fmt.Errorf("%s.match: %w", key, err)
		}
		// The first match wins: a rule after a catch-all, or after a rule
		// with the same glob, never applies.
		for j, prev := range p.Rules[:i] {
			if prev.Match == "*" || prev.Match == rule.Match {
				return fmt.Errorf("%s.match: %q can never match: rules[%d] (match %q) comes first and takes every device it would", key, rule.Match, j, prev.Match)
			}
		}
		if len(rule.Tokens) == 0 {
			return fmt.Errorf("%s.tokens: missing; a rule must grant at least one token", key)
		}
		for name, t := range rule.Tokens {
			tkey := key + ".tokens." + name
			if err := wire.ValidateName("token name", name); err != nil {
				return fmt.Errorf("%s: %w", tkey, err)
			}
			if err := t.fill(limits); err != nil {
				return fmt.Errorf("%s: %w", tkey, err)
			}
			g, err := t.expand(name, "sample-device-01")
			if err == nil {
				_, err = sampleSigner.sign(g, time.Unix(1_700_000_000, 0))
			}
			if err != nil {
				return fmt.Errorf("%s: filled in for device sample-device-01: %w", tkey, err)
			}
			rule.Tokens[name] = t
		}
	}
	return nil
}

func checkGlob(g string) error {
	if g == "" {
		return errors.New("empty glob")
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("glob %q: %w", g, err)
	}
	return nil
}

var placeholderRE = regexp.MustCompile(`\{[^{}]*\}`)

// checkPlaceholders allows only the named placeholders in s.
func checkPlaceholders(key, s string, allowed ...string) error {
	for _, ph := range placeholderRE.FindAllString(s, -1) {
		if !slices.Contains(allowed, ph) {
			return fmt.Errorf("%s: placeholder %s is not one of %s", key, ph, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// fill checks a template's fields for its service and sets defaults.
func (t *TokenTemplate) fill(limits Limits) error {
	if t.TTL == 0 {
		t.TTL = limits.DefaultTTL
	}
	if t.TTL < time.Second || t.TTL > limits.MaxTTL || t.TTL%time.Second != 0 {
		return fmt.Errorf("ttl: %v is not whole seconds between 1s and limits.max_ttl %v", t.TTL, limits.MaxTTL)
	}
	unused := func(fields map[string]string) error {
		for k, v := range fields {
			if v != "" {
				return fmt.Errorf("%s: not used by a %s token (kind %q)", k, t.Service, t.Kind)
			}
		}
		return nil
	}
	dev := "{device}"
	switch t.Service {
	case ServiceRTC:
		if t.Kind != "" {
			return errors.New("kind: an rtc token has no kind")
		}
		if t.Channel == "" {
			return errors.New("channel: missing")
		}
		if strings.Contains(t.Channel, "*") && t.Channel != "*" {
			return fmt.Errorf("channel: %q: the wildcard is only the whole channel \"*\"", t.Channel)
		}
		if t.UID == "" {
			t.UID = "{uid}"
		}
		if t.Role == "" {
			t.Role = accesstoken.RoleSubscriber.String()
		}
		if _, err := accesstoken.ParseRole(t.Role); err != nil {
			return fmt.Errorf("role: %w", err)
		}
		if err := checkPlaceholders("channel", t.Channel, dev, "{uid}"); err != nil {
			return err
		}
		if err := checkPlaceholders("uid", t.UID, dev, "{uid}"); err != nil {
			return err
		}
		return unused(map[string]string{"user": t.User, "room": t.Room})
	case ServiceRTM:
		if t.Kind != "" {
			return errors.New("kind: an rtm token has no kind")
		}
		if t.User == "" {
			return errors.New("user: missing")
		}
		if err := checkPlaceholders("user", t.User, dev); err != nil {
			return err
		}
		return unused(map[string]string{"channel": t.Channel, "uid": t.UID, "role": t.Role, "room": t.Room})
	case ServiceChat:
		switch t.Kind {
		case "", "user":
			t.Kind = "user"
			if t.User == "" {
				return errors.New("user: missing")
			}
		case "app":
			if t.User != "" {
				return errors.New("user: a chat app token has no user")
			}
		default:
			return fmt.Errorf("kind: %q is not user or app", t.Kind)
		}
		if err := checkPlaceholders("user", t.User, dev); err != nil {
			return err
		}
		return unused(map[string]string{"channel": t.Channel, "uid": t.UID, "role": t.Role, "room": t.Room})
	case ServiceEducation:
		if err := checkPlaceholders("user", t.User, dev); err != nil {
			return err
		}
		if err := checkPlaceholders("room", t.Room, dev); err != nil {
			return err
		}
		switch t.Kind {
		case "room_user":
			if t.Room == "" || t.User == "" {
				return errors.New("room and user: both needed for a room_user token")
			}
			if _, err := strconv.ParseInt(t.Role, 10, 16); err != nil {
				return fmt.Errorf("role: %q is not an integer education role", t.Role)
			}
			return unused(map[string]string{"channel": t.Channel, "uid": t.UID})
		case "user":
			if t.User == "" {
				return errors.New("user: missing")
			}
			return unused(map[string]string{"channel": t.Channel, "uid": t.UID, "role": t.Role, "room": t.Room})
		case "app":
			return unused(map[string]string{"channel": t.Channel, "uid": t.UID, "role": t.Role, "room": t.Room, "user": t.User})
		}
		return fmt.Errorf("kind: %q is not room_user, user or app", t.Kind)
	case "":
		return errors.New("service: missing")
	}
	return fmt.Errorf("service: %q is not rtc, rtm, chat or education", t.Service)
}
