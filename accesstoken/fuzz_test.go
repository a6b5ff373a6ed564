package accesstoken

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary strings to Parse. It must never panic; what
// it accepts must survive a JSON round trip and, if its fields are
// buildable, a re-sign and re-parse. The committed corpus in
// testdata/fuzz/FuzzParse holds the inputs that crash go-tokenbuilder.
func FuzzParse(f *testing.F) {
	f.Add("")
	f.Add("007")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		var ue *UnknownServiceError
		switch {
		case errors.As(err, &ue):
			if tok == nil {
				t.Fatalf("UnknownServiceError without a token")
			}
			tok.Verify(testCert) // must not panic
			return
		case err != nil:
			if tok != nil || err.Error() == "" {
				t.Fatalf("error %q with token %v", err, tok)
			}
			return
		}
		doc, err := json.Marshal(tok)
		if err != nil {
			t.Fatalf("Marshal parsed token: %v", err)
		}
		var back Token
		if err := json.Unmarshal(doc, &back); err != nil {
			t.Fatalf("Unmarshal %s: %v", doc, err)
		}
		if again := mustJSON(t, back); again != string(doc) {
			t.Fatalf("JSON round trip differs:\n%s\n%s", doc, again)
		}
		if tok.Validate() != nil {
			return
		}
		rebuilt, err := back.Build(testCert)
		if err != nil {
			t.Fatalf("Build of a valid parsed token: %v", err)
		}
		tok2, err := Parse(rebuilt)
		if err != nil {
			t.Fatalf("Parse(Build(Parse(s))): %v", err)
		}
		if i, err := tok2.Verify(testCert); i != 0 || err != nil {
			t.Fatalf("rebuilt token does not verify: %d, %v", i, err)
		}
	})
}

// FuzzBuildParse builds tokens from fuzzed fields and checks that Parse
// gives every field back and the signature verifies.
func FuzzBuildParse(f *testing.F) {
	f.Add("cam-42", "2882341273", uint32(600), uint32(300), uint32(1111111), uint32(1), uint16(0x3ff), "res", int16(-1))
	f.Add("7d72365eb983485397e3e3f9d460bdda", "", uint32(86400), uint32(1), uint32(0), uint32(99999999), uint16(1), "", int16(0))
	f.Fuzz(func(t *testing.T, channel, account string, expire, privExpire, issueTs, salt uint32, kinds uint16, resource string, role int16) {
		spec := fuzzToken(channel, account, expire, privExpire, issueTs, salt, kinds, resource, role)
		if spec.Validate() != nil {
			return
		}
		want := mustJSON(t, spec)
		token, err := spec.Build(testCert)
		if err != nil {
			t.Fatalf("Build of a valid token: %v", err)
		}
		got, err := Parse(token)
		if err != nil {
			t.Fatalf("Parse(Build(%s)): %v", want, err)
		}
		if g := mustJSON(t, got); g != want {
			t.Fatalf("round trip differs\n got %s\nwant %s", g, want)
		}
		if i, err := got.Verify(testCert); i != 0 || err != nil {
			t.Fatalf("Verify = %d, %v", i, err)
		}
	})
}

// fuzzToken makes a token with the services selected by the bits of
// kinds, in ascending type order as Parse returns them.
func fuzzToken(channel, account string, expire, privExpire, issueTs, salt uint32, kinds uint16, resource string, role int16) *Token {
	t := &Token{AppID: testAppID, IssueTs: issueTs, Expire: expire, Salt: salt}
	add := func(s Service, keys ...uint16) {
		for _, k := range keys {
			s.AddPrivilege(k, privExpire)
		}
		sortPrivileges(s.Privileges)
		t.Services = append(t.Services, s)
	}
	if kinds&1 != 0 {
		keys := []uint16{PrivJoinChannel}
		if kinds&(1<<10) != 0 {
			keys = append(keys, PrivPublishAudioStream, PrivPublishVideoStream, PrivPublishDataStream)
		}
		add(Service{Type: ServiceRTC, Channel: channel, UID: account}, keys...)
	}
	if kinds&2 != 0 {
		add(Service{Type: ServiceRTM, UserID: account}, PrivLogin)
	}
	if kinds&4 != 0 {
		add(Service{Type: ServiceStreaming, Channel: channel, Account: account}, PrivPublishMixStream)
		add(Service{Type: ServiceStreaming, Channel: channel, Account: ""}, PrivPublishRawStream)
	}
	if kinds&8 != 0 {
		add(Service{Type: ServiceFPA}, PrivLogin)
	}
	if kinds&16 != 0 {
		add(Service{Type: ServiceChat, UserID: account}, PrivChatUser)
	}
	if kinds&32 != 0 {
		add(Service{Type: ServiceFCDN, Channel: channel, Account: account}, PrivFCDNPublish, PrivFCDNPlay)
	}
	if kinds&64 != 0 {
		add(Service{Type: ServiceAPaaS, RoomUUID: channel, UserUUID: account, Role: role}, PrivAPaaSRoomUser)
	}
	if kinds&128 != 0 {
		rt := uint16(role) & 7
		add(Service{Type: ServiceRTM2, UserID: account, Permissions: []RTM2Permission{
			{ResourceType: rt, PermissionType: RTM2PermissionRead, Resources: []string{resource, channel}},
			{ResourceType: rt, PermissionType: RTM2PermissionWrite, Resources: []string{}},
			{ResourceType: rt + 1, PermissionType: RTM2PermissionRead, Resources: []string{account}},
		}}, PrivLogin)
	}
	if kinds&256 != 0 {
		add(Service{Type: ServiceConvoAI})
	}
	if kinds&512 != 0 {
		add(Service{Type: ServiceSTT}, 7)
	}
	return t
}

func TestFuzzSeedsBuild(t *testing.T) {
	// The seeds must reach the round trip, not stop at validation.
	for _, tok := range []*Token{
		fuzzToken("cam-42", "2882341273", 600, 300, 1111111, 1, 0x7ff, "res", -1),
		fuzzToken("*", "user-a", 3600, 60, 1763800000, 42, 130, "stream-a", 4),
	} {
		if err := tok.Validate(); err != nil {
			t.Errorf("seed token does not validate: %v", err)
		}
		if len(tok.Services) == 0 {
			t.Errorf("seed token has no services")
		}
	}
}
