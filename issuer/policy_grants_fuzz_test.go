package issuer

import (
	"errors"
	"path"
	"slices"
	"strings"
	"testing"

	"agoratokens/accesstoken"
	"agoratokens/wire"
)

// FuzzPolicyGrants runs arbitrary device ids and token names against the
// test policy. Whatever comes in, the matcher does not panic, refuses with
// a stable code, never grants a denied or malformed id anything, grants
// only what was asked for, and every grant is one Agora accepts.
func FuzzPolicyGrants(f *testing.F) {
	for _, s := range [][2]string{
		{"cam-1", ""}, {"cam-1", "video,signal"}, {"cam-stolen-1", "video"}, {"door-7", "doorbell,lobby"},
		{"cam-1", "doorbell"}, {"cam-1", "teleport"}, {"toaster-1", ""}, {"cam-*", "video"},
		{"", ""}, {"cam-" + strings.Repeat("x", 70), "video"}, {"cam-1", "video,video"}, {"cam-ü", "video"},
	} {
		f.Add(s[0], s[1])
	}
	p := mustPolicy(f, testPolicy)
	f.Fuzz(func(t *testing.T, device, names string) {
		var asked []string
		if names != "" {
			asked = strings.Split(names, ",")
		}
		if len(asked) > wire.MaxRequestTokens {
			return // both transports refuse longer lists before the policy
		}
		grants, err := p.Grants(device, asked)
		if err != nil {
			var de *DecisionError
			if !errors.As(err, &de) || (de.Code != wire.CodeForbidden && de.Code != wire.CodeInvalidRequest) {
				t.Fatalf("Grants(%q, %q): error %v is not a decision with a stable code", device, asked, err)
			}
			if grants != nil {
				t.Fatalf("Grants(%q, %q) refused and granted %v", device, asked, grants)
			}
			return
		}
		if wire.ValidateDeviceID(device) != nil {
			t.Fatalf("granted %v to the malformed id %q", grants, device)
		}
		if ok, _ := path.Match("cam-stolen-*", device); ok {
			t.Fatalf("granted %v to the denied %q", grants, device)
		}
		for _, g := range grants {
			if asked != nil && !slices.Contains(asked, g.Name) {
				t.Fatalf("granted %q, which %q did not ask for (%q)", g.Name, device, asked)
			}
			if strings.Contains(g.Channel+g.UID+g.User+g.Room, "{") {
				t.Fatalf("grant %+v keeps a placeholder", g)
			}
			switch g.Service {
			case ServiceRTC:
				if err := accesstoken.ValidateChannel(g.Channel); g.Channel != "*" && err != nil {
					t.Fatalf("grant %+v: %v", g, err)
				}
			case ServiceRTM, ServiceChat, ServiceEducation:
				if err := accesstoken.ValidateAccount("user", g.User); err != nil {
					t.Fatalf("grant %+v: %v", g, err)
				}
			}
		}
	})
}
