package agent

import (
	"errors"
	"fmt"

	"agoratokens/accesstoken"
	"agoratokens/wire"
)

// issueSkew is how far a grant's stated issued_at may be from the issue_ts
// inside its token (the issuer reads its clock twice).
const issueSkew = 5

// checkGrant checks that a grant carries a token that decodes, is for
// what the grant says (service, channel or user, uid), and that the
// lifetime the grant states is sane: positive, at most 24 h, and no
// longer than the token itself allows. A grant that fails is never handed
// out.
func checkGrant(g *wire.Grant) error {
	if err := wire.ValidateName("token name", g.Name); err != nil {
		return err
	}
	tok, err := accesstoken.Parse(g.Token)
	if err != nil {
		return fmt.Errorf("token %q does not decode: %w", g.Name, err)
	}
	st, ok := accesstoken.ParseServiceType(g.Service)
	if !ok {
		return fmt.Errorf("token %q: service %q is unknown", g.Name, g.Service)
	}
	svc := tok.Service(st)
	if svc == nil {
		return fmt.Errorf("token %q: grant says %s but the token has no %s service", g.Name, g.Service, g.Service)
	}
	if err := matchIdentity(g, svc); err != nil {
		return fmt.Errorf("token %q: %w", g.Name, err)
	}
	life := g.ExpiresAt - g.IssuedAt
	if life <= 0 || life > accesstoken.MaxExpire {
		return fmt.Errorf("token %q: lifetime %d s (issued_at %d, expires_at %d) is not within 1 s..24 h", g.Name, life, g.IssuedAt, g.ExpiresAt)
	}
	if d := g.IssuedAt - int64(tok.IssueTs); d > issueSkew || d < -issueSkew {
		return fmt.Errorf("token %q: issued_at %d is %d s from the token's issue_ts %d", g.Name, g.IssuedAt, d, tok.IssueTs)
	}
	var keys []uint16
	for _, p := range svc.Privileges {
		keys = append(keys, p.Key)
	}
	usable, err := tok.ExpiresAt(st, keys...)
	if err != nil {
		return fmt.Errorf("token %q: %w", g.Name, err)
	}
	if g.ExpiresAt > int64(usable) {
		return fmt.Errorf("token %q: expires_at %d is after the token stops working (%d)", g.Name, g.ExpiresAt, usable)
	}
	return nil
}

// matchIdentity checks the grant's channel, user and uid against the
// service fields inside the token.
func matchIdentity(g *wire.Grant, svc *accesstoken.Service) error {
	mismatch := func(field, grant, token string) error {
		return fmt.Errorf("grant %s %q does not match the token's %q", field, grant, token)
	}
	// A numeric uid 0 packs as the empty string.
	uid := g.UID
	if uid == "0" {
		uid = ""
	}
	switch svc.Type {
	case accesstoken.ServiceRTC:
		if g.Channel != svc.Channel {
			return mismatch("channel", g.Channel, svc.Channel)
		}
		who := uid
		if who == "" && g.User != "" {
			who = g.User
		}
		if who != svc.UID {
			return mismatch("uid", who, svc.UID)
		}
	case accesstoken.ServiceRTM, accesstoken.ServiceRTM2, accesstoken.ServiceChat:
		who := g.User
		if who == "" {
			who = g.UID
		}
		if who != svc.UserID {
			return mismatch("user", who, svc.UserID)
		}
	case accesstoken.ServiceStreaming, accesstoken.ServiceFCDN:
		if g.Channel != svc.Channel {
			return mismatch("channel", g.Channel, svc.Channel)
		}
	case accesstoken.ServiceAPaaS:
		if g.Channel != "" && g.Channel != svc.RoomUUID {
			return mismatch("channel (room)", g.Channel, svc.RoomUUID)
		}
		if g.User != "" && g.User != svc.UserUUID {
			return mismatch("user", g.User, svc.UserUUID)
		}
	}
	return nil
}

// verifyPush checks a pushed grant (one no request of the agent's asked
// for) against cur, the token of that name the agent holds, which came
// from a reply it asked for or from its state files. The agent cannot
// check a signature (the certificate stays in the cloud), so it checks
// the shape: a push may only replace a token with one for the same App
// ID, service, channel, uid, user and role, with a kid. A push for a name
// the agent holds no token of is refused: the agent asks for that itself.
func verifyPush(g *wire.Grant, cur *Token) error {
	if cur == nil {
		return fmt.Errorf("the agent holds no token %q to check a push against", g.Name)
	}
	if err := wire.ValidateName("kid", g.KID); err != nil {
		return err
	}
	type field struct{ name, push, held string }
	for _, f := range []field{
		{"service", g.Service, cur.Service}, {"channel", g.Channel, cur.Channel},
		{"uid", g.UID, cur.UID}, {"user", g.User, cur.User}, {"role", g.Role, cur.Role},
	} {
		if f.push != f.held {
			return fmt.Errorf("push %s %q is not the held token's %q", f.name, f.push, f.held)
		}
	}
	pt, err := accesstoken.Parse(g.Token)
	if err != nil {
		return fmt.Errorf("token does not decode: %w", err)
	}
	ht, err := accesstoken.Parse(cur.Token)
	if err != nil {
		return fmt.Errorf("held token does not decode: %w", err)
	}
	if pt.AppID != ht.AppID {
		return errors.New("push is for another App ID than the held token")
	}
	if len(pt.Services) != len(ht.Services) {
		return fmt.Errorf("push carries %d services, the held token %d", len(pt.Services), len(ht.Services))
	}
	for i := range pt.Services {
		if pt.Services[i].Type != ht.Services[i].Type {
			return fmt.Errorf("push carries service %d where the held token has %d", pt.Services[i].Type, ht.Services[i].Type)
		}
	}
	return nil
}
