package accesstoken

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const (
	testAppID = "970CA35de60c44645bbae8a215061b33"
	testCert  = "5CFd2fd1755d40ecb72977518be15d3b"
)

// allServicesSpec carries every service type, two of one type, unnamed
// privilege numbers and RTM2 permissions, in the exact output form.
const allServicesSpec = `{"version":"007","app_id":"970CA35de60c44645bbae8a215061b33","issue_ts":1111111,"expire":600,"salt":1,"services":[` +
	`{"type":"rtc","channel":"cam-42","uid":"","privileges":{"join_channel":600,"publish_audio_stream":300,"publish_video_stream":300,"publish_data_stream":60}},` +
	`{"type":"rtm","user_id":"dev-1","privileges":{"login":600}},` +
	`{"type":"streaming","channel":"cam-42","account":"2882341273","privileges":{"publish_mix_stream":600}},` +
	`{"type":"streaming","channel":"cam-43","account":"","privileges":{"publish_raw_stream":600}},` +
	`{"type":"fpa","privileges":{"login":600}},` +
	`{"type":"chat","user_id":"","privileges":{"app":600}},` +
	`{"type":"fcdn","channel":"cam-42","account":"a","privileges":{"publish":600,"play":600}},` +
	`{"type":"apaas","room_uuid":"room","user_uuid":"user","role":-1,"privileges":{"room_user":600}},` +
	`{"type":"rtm2","user_id":"test_user","privileges":{"login":600},"permissions":[` +
	`{"resource_type":0,"permission_type":0,"resources":["message-a","message-b"]},` +
	`{"resource_type":0,"permission_type":1,"resources":[]},` +
	`{"resource_type":4,"permission_type":0,"resources":["user-a"]}]},` +
	`{"type":"convoai","privileges":{}},` +
	`{"type":"stt","privileges":{"7":600}}]}`

func TestJSONInspectBuildIsIdentity(t *testing.T) {
	var spec Token
	if err := json.Unmarshal([]byte(allServicesSpec), &spec); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	token, err := spec.Build(testCert)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	parsed, err := Parse(token)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got, err := json.Marshal(parsed)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if string(got) != allServicesSpec {
		t.Errorf("inspect(build(spec)) != spec\n got %s\nwant %s", got, allServicesSpec)
	}
	// A pointer and a value marshal alike.
	if byValue := mustJSON(t, *parsed); byValue != string(got) {
		t.Errorf("value and pointer marshal differently")
	}
}

func TestJSONInputForms(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // the service as re-marshalled
	}{
		{"numeric uid", `{"type":"rtc","channel":"c","uid":2882341273}`,
			`{"type":"rtc","channel":"c","uid":"2882341273","privileges":{}}`},
		{"uid 0 packs as empty", `{"type":"rtc","channel":"c","uid":0}`,
			`{"type":"rtc","channel":"c","uid":"","privileges":{}}`},
		{"privilege by number", `{"type":"rtc","channel":"c","privileges":{"1":5,"publish_data_stream":6}}`,
			`{"type":"rtc","channel":"c","uid":"","privileges":{"join_channel":5,"publish_data_stream":6}}`},
		{"rtm2 names beside numbers", `{"type":"rtm2","user_id":"u","permissions":[{"resource_type":1,"resource":"stream_channels","permission_type":1,"permission":"write","resources":["s"]}]}`,
			`{"type":"rtm2","user_id":"u","privileges":{},"permissions":[{"resource_type":1,"permission_type":1,"resources":["s"]}]}`},
		{"rtm2 names alone", `{"type":"rtm2","user_id":"u","permissions":[{"resource":"users","permission":"read"}]}`,
			`{"type":"rtm2","user_id":"u","privileges":{},"permissions":[{"resource_type":4,"permission_type":0,"resources":[]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Service
			if err := json.Unmarshal([]byte(tt.in), &s); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if got := mustJSON(t, s); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestJSONErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not an object", `[1]`, "want a JSON object, got an array"},
		{"unknown top-level key", `{"app_id":"x","signature":"y"}`, `unknown key "signature"`},
		{"keys match exactly", `{"App_ID":"x"}`, `unknown key "App_ID"`},
		{"duplicate key", `{"expire":1,"expire":2}`, `key "expire" given twice`},
		{"wrong version", `{"version":"006"}`, `version: is "006", want "007"`},
		{"negative expire", `{"expire":-1}`, "token expire"},
		{"trailing data", `{"expire":1} {}`, "after top-level value"},
		{"unknown service type", `{"services":[{"type":"video"}]}`, `service type "video" is not one of rtc, rtm, streaming, fpa, chat, fcdn, apaas, rtm2, convoai, stt`},
		{"service without type", `{"services":[{"channel":"c"}]}`, `service has no "type"`},
		{"key of another type", `{"services":[{"type":"rtm","channel":"c"}]}`, `service 1: rtm service: unknown key "channel"`},
		{"unknown privilege", `{"services":[{"type":"rtc","privileges":{"join":1}}]}`, `rtc privilege "join" is not one of join_channel, publish_audio_stream, publish_video_stream, publish_data_stream`},
		{"name of another type", `{"services":[{"type":"chat","privileges":{"login":1}}]}`, `chat privilege "login" is not one of user, app`},
		{"unnamed service privilege", `{"services":[{"type":"stt","privileges":{"x":1}}]}`, `stt privileges have no names`},
		{"privilege twice", `{"services":[{"type":"rtc","privileges":{"join_channel":1,"1":2}}]}`, `given twice`},
		{"privilege out of range", `{"services":[{"type":"rtc","privileges":{"join_channel":4294967296}}]}`, `privilege join_channel: want seconds`},
		{"bad uid", `{"services":[{"type":"rtc","uid":-5}]}`, `uid: want a string or a number`},
		{"unknown resource name", `{"services":[{"type":"rtm2","permissions":[{"resource":"files","permission":"read"}]}]}`, `resource "files" is not one of message_channels`},
		{"unknown permission name", `{"services":[{"type":"rtm2","permissions":[{"resource_type":0,"permission":"admin"}]}]}`, `permission "admin" is not one of read, write`},
		{"name and number disagree", `{"services":[{"type":"rtm2","permissions":[{"resource_type":1,"resource":"users","permission_type":0}]}]}`, `resource "users" is resource_type 4, not 1`},
		{"missing permission type", `{"services":[{"type":"rtm2","permissions":[{"resource_type":1}]}]}`, `permission 1: permission_type missing`},
		{"unknown permission key", `{"services":[{"type":"rtm2","permissions":[{"resource_type":1,"permission_type":0,"scope":"x"}]}]}`, `unknown key "scope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tok Token
			err := json.Unmarshal([]byte(tt.in), &tok)
			if err == nil {
				t.Fatalf("Unmarshal(%s) succeeded, want error containing %q", tt.in, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestJSONTrailingDataDirect(t *testing.T) {
	var tok Token
	err := tok.UnmarshalJSON([]byte(`{"expire":1} {}`))
	if err == nil || !strings.Contains(err.Error(), "data after the JSON object") {
		t.Errorf("UnmarshalJSON with trailing data: %v", err)
	}
}

func TestPrivilegeNames(t *testing.T) {
	for st, names := range privilegeNames {
		for key, name := range names {
			if name == "" {
				continue
			}
			if got := PrivilegeName(st, uint16(key)); got != name {
				t.Errorf("PrivilegeName(%s, %d) = %q, want %q", st, key, got, name)
			}
			if k, err := ParsePrivilegeName(st, name); err != nil || int(k) != key {
				t.Errorf("ParsePrivilegeName(%s, %q) = %d, %v", st, name, k, err)
			}
		}
	}
	if got := PrivilegeName(ServiceConvoAI, 3); got != "3" {
		t.Errorf("unnamed privilege renders as %q, want \"3\"", got)
	}
}

func fixedNow() time.Time        { return time.Unix(1111111, 0) }
func fixedSalt() (uint32, error) { return 1, nil }

// mustBuild builds a token from its JSON spec with testCert.
func mustBuild(t *testing.T, spec string) string {
	t.Helper()
	var tok Token
	if err := json.Unmarshal([]byte(spec), &tok); err != nil {
		t.Fatalf("spec: %v", err)
	}
	s, err := tok.Build(testCert)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return s
}
