package issuer

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/secretfile"
	"agoratokens/wire"
)

// Signer turns policy grants into signed tokens with the active App
// Certificate, and verifies tokens against every configured one. It keeps
// one accesstoken.Builder per certificate and is safe for concurrent use.
type Signer struct {
	active   string
	ids      []string
	builders map[string]*accesstoken.Builder
}

// NewSigner returns a signer for appID whose active certificate has id
// active. salt may be nil (crypto/rand); tests inject a fixed one.
func NewSigner(appID string, certs []Certificate, active string, salt func() (uint32, error)) (*Signer, error) {
	if err := accesstoken.ValidateHex32("app id", appID); err != nil {
		return nil, err
	}
	s := &Signer{active: active, builders: map[string]*accesstoken.Builder{}}
	for _, c := range certs {
		if err := accesstoken.ValidateHex32("app certificate "+c.ID, c.Value.Reveal()); err != nil {
			return nil, err
		}
		s.ids = append(s.ids, c.ID)
		s.builders[c.ID] = &accesstoken.Builder{AppID: appID, Certificate: c.Value.Reveal(), Salt: salt}
	}
	if s.builders[active] == nil {
		return nil, fmt.Errorf("active certificate %q is not configured", active)
	}
	return s, nil
}

// Active returns the id (kid) of the signing certificate.
func (s *Signer) Active() string { return s.active }

// Sign signs g with the active certificate at now (the issuer's clock)
// and returns the reply entry.
func (s *Signer) Sign(g Grant, now time.Time) (wire.Grant, error) {
	return s.sign(g, now)
}

func (s *Signer) sign(g Grant, now time.Time) (wire.Grant, error) {
	// A token's life counts in whole seconds from its issue time. With
	// the signing time rounded up, it never ends before now + ttl: an
	// agent counts the life from when it sent the request (before now)
	// and so never holds a token past its real expiry. Rounded down, it
	// would by up to a second when it serves from what it holds.
	if t := now.Truncate(time.Second); t.Before(now) {
		now = t.Add(time.Second)
	}
	b := *s.builders[s.active]
	b.Now = func() time.Time { return now }
	ttl := uint32(g.TTL / time.Second)
	out := wire.Grant{
		Name: g.Name, Service: g.Service, KID: s.active,
		IssuedAt: now.Unix(), ExpiresAt: now.Unix() + int64(ttl), TTL: int64(ttl),
	}
	var tok string
	var err error
	switch g.Service {
	case ServiceRTC:
		var role accesstoken.Role
		if role, err = accesstoken.ParseRole(g.Role); err != nil {
			return wire.Grant{}, err
		}
		out.Channel, out.UID, out.Role = g.Channel, g.UID, g.Role
		tok, err = b.RTCWithAccount(g.Channel, g.UID, role, ttl, ttl)
	case ServiceRTM:
		out.User = g.User
		tok, err = b.RTM(g.User, "", ttl)
	case ServiceChat:
		out.User = g.User
		if g.Kind == "app" {
			out.Role = "app"
			tok, err = b.ChatApp(ttl)
		} else {
			tok, err = b.ChatUser(g.User, ttl)
		}
	case ServiceEducation:
		out.User, out.Role = g.User, g.Kind
		switch g.Kind {
		case "room_user":
			var role int64
			if role, err = strconv.ParseInt(g.Role, 10, 16); err != nil {
				return wire.Grant{}, fmt.Errorf("education role %q: %w", g.Role, err)
			}
			out.Channel, out.Role = g.Room, g.Role
			tok, err = b.EducationRoomUser(g.Room, g.User, int16(role), ttl)
		case "user":
			tok, err = b.EducationUser(g.User, ttl)
		case "app":
			tok, err = b.EducationApp(ttl)
		default:
			err = fmt.Errorf("education kind %q is unknown", g.Kind)
		}
	default:
		err = fmt.Errorf("service %q is unknown", g.Service)
	}
	if err != nil {
		return wire.Grant{}, fmt.Errorf("sign %s token %q: %w", g.Service, g.Name, err)
	}
	out.Token = tok
	return out, nil
}

// Verify parses token and checks it against every configured certificate,
// returning the parsed token and the id of the certificate that signed
// it.
func (s *Signer) Verify(token string) (*accesstoken.Token, string, error) {
	t, err := accesstoken.Parse(token)
	if err != nil {
		return nil, "", err
	}
	if t.AppID != s.builders[s.active].AppID {
		return t, "", errors.New("token is for another app id")
	}
	certs := make([]string, len(s.ids))
	for i, id := range s.ids {
		certs[i] = s.builders[id].Certificate
	}
	i, err := t.Verify(certs...)
	if err != nil {
		return t, "", err
	}
	return t, s.ids[i], nil
}

// sampleSigner signs sample grants while a policy is validated, so that a
// template the codec would refuse fails at load, not at a device's
// request. Its app id and certificate are fixed test values, never used
// for real tokens.
var sampleSigner = func() *Signer {
	s, err := NewSigner("00000000000000000000000000000001",
		[]Certificate{{ID: "sample", Value: secretfile.NewSecret("00000000000000000000000000000002")}},
		"sample", func() (uint32, error) { return 1, nil })
	if err != nil {
		panic(err)
	}
	return s
}()
