package issuer

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/secretfile"
	"agoratokens/wire"
)

// testPolicy is the policy the tests (unit and end to end) run with.
const testPolicy = `
deny: ["cam-stolen-*"]
rules:
  - match: "cam-*"
    tokens:
      video:  {service: rtc, channel: "cam-{device}", uid: "{uid}", role: publisher, ttl: 1h}
      signal: {service: rtm, user: "{device}", ttl: 30m}
  - match: "door-*"
    tokens:
      doorbell: {service: rtc, channel: "door-{device}", uid: "7"}
      chat:     {service: chat, user: "{device}"}
      class:    {service: education, kind: room_user, room: "room-1", user: "{device}", role: "2"}
      lobby:    {service: rtc, channel: "lobby", uid: "0", role: publisher}
`

func mustPolicy(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := ParsePolicy(strings.NewReader(src), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeviceUID(t *testing.T) {
	a, b := DeviceUID("cam-1"), DeviceUID("cam-2")
	if a == 0 || b == 0 || a == b || DeviceUID("cam-1") != a {
		t.Fatalf("uids %d %d are not stable, distinct and non-zero", a, b)
	}
}

func TestGrants(t *testing.T) {
	p := mustPolicy(t, testPolicy)
	uid := strconv.FormatUint(uint64(DeviceUID("cam-42")), 10)
	tests := []struct {
		name   string
		device string
		names  []string
		want   []Grant
		code   string // error code, "" for success
	}{
		{"all of the rule, sorted", "cam-42", nil, []Grant{
			{Name: "signal", Service: "rtm", User: "cam-42", TTL: 30 * time.Minute},
			{Name: "video", Service: "rtc", Channel: "cam-cam-42", UID: uid, Role: "publisher", TTL: time.Hour},
		}, ""},
		{"one by name", "cam-42", []string{"video"}, []Grant{
			{Name: "video", Service: "rtc", Channel: "cam-cam-42", UID: uid, Role: "publisher", TTL: time.Hour},
		}, ""},
		{"duplicates once", "cam-42", []string{"signal", "signal"}, []Grant{
			{Name: "signal", Service: "rtm", User: "cam-42", TTL: 30 * time.Minute},
		}, ""},
		{"fixed uid, default role and ttl", "door-1", []string{"doorbell", "lobby"}, []Grant{
			{Name: "doorbell", Service: "rtc", Channel: "door-door-1", UID: "7", Role: "subscriber", TTL: time.Hour},
			{Name: "lobby", Service: "rtc", Channel: "lobby", UID: "", Role: "publisher", TTL: time.Hour},
		}, ""},
		{"chat and education", "door-1", []string{"chat", "class"}, []Grant{
			{Name: "chat", Service: "chat", Kind: "user", User: "door-1", TTL: time.Hour},
			{Name: "class", Service: "education", Kind: "room_user", Room: "room-1", User: "door-1", Role: "2", TTL: time.Hour},
		}, ""},
		{"another rule's token", "cam-42", []string{"doorbell"}, nil, wire.CodeForbidden},
		{"unknown name", "cam-42", []string{"teleport"}, nil, wire.CodeInvalidRequest},
		{"no rule", "toaster-1", nil, nil, wire.CodeForbidden},
		{"denied before rules", "cam-stolen-3", nil, nil, wire.CodeForbidden},
		{"bad device id", "cam/1", nil, nil, wire.CodeInvalidRequest},
		{"channel too long for this id", "cam-" + strings.Repeat("x", 60), []string{"video"}, nil, wire.CodeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Grants(tt.device, tt.names)
			if tt.code != "" {
				var de *DecisionError
				if !errors.As(err, &de) || de.Code != tt.code {
					t.Fatalf("err = %v, want code %s", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	rule := func(tok string) string {
		return "rules:\n  - match: \"cam-*\"\n    tokens:\n      t: " + tok + "\n"
	}
	tests := []struct {
		name, src, want string
	}{
		{"unknown key", "rules: []\nallow: [x]\n", `unknown key "allow"`},
		{"unknown template key", rule("{service: rtc, channel: c, colour: red}"), "rules[0].tokens.t.colour"},
		{"no rules", "deny: []\n", "rules: missing"},
		{"bad glob", "rules:\n  - match: \"cam-[\"\n    tokens: {t: {service: rtm, user: u}}\n", "rules[0].match"},
		{"bad deny glob", "deny: [\"[\"]\n" + rule("{service: rtm, user: u}"), "deny[0]"},
		{"no tokens", "rules:\n  - match: \"*\"\n", "rules[0].tokens: missing"},
		{"no service", rule("{user: u}"), "service: missing"},
		{"unknown service", rule("{service: fax}"), `service: "fax" is not`},
		{"rtc no channel", rule("{service: rtc}"), "channel: missing"},
		{"rtc role", rule("{service: rtc, channel: c, role: king}"), "role:"},
		{"rtc user", rule("{service: rtc, channel: c, user: u}"), "user: not used"},
		{"partial wildcard", rule(`{service: rtc, channel: "cam-*"}`), "wildcard is only the whole channel"},
		{"bad placeholder", rule(`{service: rtc, channel: "c-{serial}"}`), "placeholder {serial}"},
		{"uid placeholder in rtm", rule(`{service: rtm, user: "{uid}"}`), "placeholder {uid}"},
		{"bad channel chars", rule(`{service: rtc, channel: "a/b"}`), "filled in for device sample-device-01"},
		{"ttl over max", rule("{service: rtm, user: u, ttl: 25h}"), "ttl: 25h0m0s"},
		{"ttl fraction", rule("{service: rtm, user: u, ttl: 1.5s}"), "ttl:"},
		{"rtm no user", rule("{service: rtm}"), "user: missing"},
		{"chat kind", rule("{service: chat, kind: admin}"), `kind: "admin"`},
		{"chat app with user", rule("{service: chat, kind: app, user: u}"), "has no user"},
		{"education kind", rule("{service: education, user: u}"), `kind: "" is not room_user`},
		{"education role", rule("{service: education, kind: room_user, room: r, user: u, role: teacher}"), "not an integer"},
		{"token name", "rules:\n  - match: \"*\"\n    tokens: {\"a b\": {service: rtm, user: u}}\n", "token name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePolicy(strings.NewReader(tt.src), Limits{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPolicyWildcardChannel(t *testing.T) {
	// "*" is the only wildcard, granted only when written as is. Whether
	// it signs depends on the codec accepting "*" as a channel.
	_, err := ParsePolicy(strings.NewReader(`rules:
  - match: "ops-*"
    tokens: {all: {service: rtc, channel: "*", role: subscriber}}
`), Limits{})
	if err != nil && !strings.Contains(err.Error(), "channel") {
		t.Fatalf("unexpected error: %v", err)
	}
}

func TestSignerGrants(t *testing.T) {
	p := mustPolicy(t, testPolicy)
	s, err := NewSigner(testAppID, []Certificate{{ID: "old", Value: secretfile.NewSecret(testCert2)}, {ID: "primary", Value: secretfile.NewSecret(testCert)}},
		"primary", func() (uint32, error) { return 42, nil })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_763_800_000, 0)
	for _, dev := range []string{"cam-42", "door-1"} {
		grants, err := p.Grants(dev, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range grants {
			wg, err := s.Sign(g, now)
			if err != nil {
				t.Fatalf("%s %s: %v", dev, g.Name, err)
			}
			if wg.KID != "primary" || wg.IssuedAt != now.Unix() || wg.TTL != int64(g.TTL/time.Second) ||
				wg.ExpiresAt != now.Unix()+wg.TTL || wg.Name != g.Name || wg.Service != g.Service {
				t.Errorf("%s %s: reply fields %+v", dev, g.Name, wg)
			}
			tok, kid, err := s.Verify(wg.Token)
			if err != nil || kid != "primary" {
				t.Fatalf("%s %s: verify: kid %q, %v", dev, g.Name, kid, err)
			}
			checkToken(t, tok, g)
		}
	}
}

// checkToken checks that a parsed token carries what the grant says.
func checkToken(t *testing.T, tok *accesstoken.Token, g Grant) {
	t.Helper()
	if tok.AppID != testAppID || tok.Expire != uint32(g.TTL/time.Second) {
		t.Errorf("%s: app id %q expire %d", g.Name, tok.AppID, tok.Expire)
	}
	switch g.Service {
	case ServiceRTC:
		svc := tok.Service(accesstoken.ServiceRTC)
		if svc == nil || svc.Channel != g.Channel || svc.UID != g.UID {
			t.Fatalf("%s: rtc service %+v, want channel %q uid %q", g.Name, svc, g.Channel, g.UID)
		}
		_, pub := svc.Privilege(accesstoken.PrivPublishVideoStream)
		if pub != (g.Role == "publisher") {
			t.Errorf("%s: publish privilege %v for role %s", g.Name, pub, g.Role)
		}
	case ServiceRTM:
		if svc := tok.Service(accesstoken.ServiceRTM); svc == nil || svc.UserID != g.User {
			t.Fatalf("%s: rtm service %+v", g.Name, svc)
		}
	case ServiceChat:
		if svc := tok.Service(accesstoken.ServiceChat); svc == nil || svc.UserID != g.User {
			t.Fatalf("%s: chat service %+v", g.Name, svc)
		}
	case ServiceEducation:
		if svc := tok.Service(accesstoken.ServiceAPaaS); svc == nil || svc.RoomUUID != g.Room || svc.UserUUID != g.User || svc.Role != 2 {
			t.Fatalf("%s: apaas service %+v", g.Name, svc)
		}
	}
}

func TestTake(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name   string
		b      bucket
		now    time.Time
		ok     bool
		tokens float64
		retry  time.Duration
	}{
		{"new bucket starts full", bucket{}, t0, true, 2, 0},
		{"last token", bucket{tokens: 1, last: t0}, t0, true, 0, 0},
		{"empty", bucket{tokens: 0, last: t0}, t0, false, 0, 10 * time.Second},
		{"half refilled", bucket{tokens: 0, last: t0}, t0.Add(5 * time.Second), false, 0.5, 5 * time.Second},
		{"refilled", bucket{tokens: 0, last: t0}, t0.Add(10 * time.Second), true, 0, 0},
		{"capped at burst", bucket{tokens: 0, last: t0}, t0.Add(time.Hour), true, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, ok, retry := take(tt.b, tt.now, 6, 3) // 6/min = one per 10 s
			if ok != tt.ok || retry != tt.retry || next.tokens != tt.tokens {
				t.Fatalf("take = %+v %v %v, want tokens %v ok %v retry %v", next, ok, retry, tt.tokens, tt.ok, tt.retry)
			}
		})
	}
}

func TestLimiterForgetsRefilledBuckets(t *testing.T) {
	l := newLimiter(60, 2)
	t0 := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		l.allow("cam-"+strconv.Itoa(i), t0)
	}
	if n := l.size(); n != 3 {
		t.Fatalf("tracking %d devices, want 3", n)
	}
	l.allow("cam-9", t0.Add(2*time.Minute)) // sweeps; the others are full again
	if n := l.size(); n != 1 {
		t.Fatalf("tracking %d devices after the sweep, want 1", n)
	}
}

func TestReplayCache(t *testing.T) {
	c := newReplayCache(time.Minute, 10)
	t0 := time.Unix(1000, 0)
	e, owner := c.begin("d/r1", t0)
	if !owner {
		t.Fatal("first attempt is not the owner")
	}
	dup, owner2 := c.begin("d/r1", t0.Add(time.Second))
	if owner2 || dup != e {
		t.Fatal("retry did not join the first attempt")
	}
	c.finish("d/r1", e, []byte("reply"))
	<-dup.done
	if string(dup.reply) != "reply" {
		t.Fatalf("retry got %q", dup.reply)
	}
	if _, owner := c.begin("d/r1", t0.Add(2*time.Minute)); !owner {
		t.Fatal("an expired entry was replayed")
	}
	f, _ := c.begin("d/r2", t0)
	c.finish("d/r2", f, nil)
	if _, owner := c.begin("d/r2", t0); !owner {
		t.Fatal("a failed attempt was cached")
	}
}

// TestSignerRoundsIssueTimeUp: a token's life never ends before the
// signing time plus its ttl (an agent counts the life from when it sent
// the request, before the signing), so a signing time between seconds
// is rounded up, in the reply and in the token alike.
func TestSignerRoundsIssueTimeUp(t *testing.T) {
	s, err := NewSigner(testAppID, []Certificate{{ID: "primary", Value: secretfile.NewSecret(testCert)}}, "primary", nil)
	if err != nil {
		t.Fatal(err)
	}
	g := Grant{Name: "video", Service: ServiceRTC, Channel: "cam", UID: "1", Role: "publisher", TTL: time.Hour}
	for _, tt := range []struct {
		at   time.Time
		want int64
	}{
		{time.Unix(1_763_800_000, 0), 1_763_800_000},
		{time.Unix(1_763_800_000, 1), 1_763_800_001},
		{time.Unix(1_763_800_000, 999_999_999), 1_763_800_001},
	} {
		wg, err := s.Sign(g, tt.at)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := s.Verify(wg.Token)
		if err != nil {
			t.Fatal(err)
		}
		if wg.IssuedAt != tt.want || int64(tok.IssueTs) != tt.want || wg.ExpiresAt != tt.want+3600 {
			t.Errorf("signed at %v: issued_at %d, token issue_ts %d, expires_at %d; want issued %d",
				tt.at, wg.IssuedAt, tok.IssueTs, wg.ExpiresAt, tt.want)
		}
		if end := time.Unix(wg.ExpiresAt, 0); end.Before(tt.at.Add(g.TTL)) {
			t.Errorf("signed at %v: the token ends at %v, before signing time + ttl", tt.at, end)
		}
	}
}
