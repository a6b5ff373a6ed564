package wire

import (
	"strings"
	"testing"
)

func TestValidateDeviceID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want string // substring of the error; "" = valid
	}{
		{"dev-1", ""},
		{"cam_42.front", ""},
		{strings.Repeat("a", 64), ""},
		{"", "empty"},
		{strings.Repeat("a", 65), "65 bytes"},
		{"dev/1", "byte 4"},
		{"dev+", "byte 4"},
		{"dev#", "byte 4"},
		{"déjà", "byte 2"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			err := ValidateDeviceID(tc.id)
			checkErr(t, err, tc.want)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestTopics(t *testing.T) {
	tp := NewTopics("")
	if tp.Root != DefaultRoot {
		t.Fatalf("default root = %q", tp.Root)
	}
	tp = NewTopics("fleet/x/")
	for got, want := range map[string]string{
		tp.Req("d1"):         "fleet/x/devices/d1/req",
		tp.Token("d1"):       "fleet/x/devices/d1/token",
		tp.Status("d1"):      "fleet/x/devices/d1/status",
		tp.IssuerStatus():    "fleet/x/issuer/status",
		tp.AllReqs():         "fleet/x/devices/+/req",
		tp.SharedReqs(""):    "fleet/x/devices/+/req",
		tp.SharedReqs("iss"): "$share/iss/fleet/x/devices/+/req",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestDeviceFromReq(t *testing.T) {
	tp := NewTopics("agora/v1")
	for _, tc := range []struct {
		topic, id, err string
	}{
		{"agora/v1/devices/cam-1/req", "cam-1", ""},
		{"agora/v1/devices/cam-1/token", "", "not a request topic"},
		{"other/devices/cam-1/req", "", "not a request topic"},
		{"agora/v1/devices//req", "", "empty"},
		{"agora/v1/devices/a/b/req", "", "byte 2"},
	} {
		t.Run(tc.topic, func(t *testing.T) {
			id, err := tp.DeviceFromReq(tc.topic)
			checkErr(t, err, tc.err)
			if id != tc.id {
				t.Fatalf("id = %q, want %q", id, tc.id)
			}
		})
	}
}

func TestValidateRoot(t *testing.T) {
	for root, want := range map[string]string{
		"agora/v1":  "",
		"":          "empty",
		"a/+/b":     "wildcard",
		"a/#":       "wildcard",
		"$SYS/x":    "starts with $",
		"/agora":    "empty level",
		"agora//v1": "empty level",
	} {
		checkErr(t, ValidateRoot(root), want)
	}
}

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name, payload, err string
	}{
		{"all tokens", `{"v":1,"id":"r-1"}`, ""},
		{"named", `{"v":1,"id":"r-1","tokens":["video","signal"]}`, ""},
		{"unknown fields ignored", `{"v":1,"id":"r-1","extra":{"a":1}}`, ""},
		{"not json", `{"v":1,`, "not a JSON object"},
		{"array", `[1,2]`, "not a JSON object"},
		{"no version", `{"id":"r-1"}`, `no schema version`},
		{"wrong version", `{"v":2,"id":"r-1"}`, "schema version 2"},
		{"no id", `{"v":1}`, "request id is empty"},
		{"bad id", `{"v":1,"id":"r 1"}`, "request id"},
		{"bad name", `{"v":1,"id":"r","tokens":["vi/deo"]}`, "token name"},
		{"wrong type", `{"v":1,"id":"r","tokens":"video"}`, "does not match the schema"},
		{"oversize", `{"v":1,"id":"r","pad":"` + strings.Repeat("x", MaxPayload) + `"}`, "max 16384"},
		{"too many", `{"v":1,"id":"r","tokens":[` + strings.Repeat(`"a",`, 40) + `"a"]}`, "max 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRequest([]byte(tc.payload))
			checkErr(t, err, tc.err)
		})
	}
}

func TestDecodeReply(t *testing.T) {
	ok := `{"v":1,"id":"r-1","issued_at":100,"tokens":[{"name":"video","service":"rtc","channel":"c","uid":"1","token":"007x","issued_at":100,"expires_at":160,"ttl":60,"kid":"p"}]}`
	r, err := DecodeReply([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if g := r.Tokens[0]; g.Lifetime() != 60 || g.KID != "p" || r.IsPush() {
		t.Fatalf("decoded %+v", r)
	}
	for _, tc := range []struct{ name, payload, err string }{
		{"error reply", `{"v":1,"id":"r-1","error":{"code":"forbidden","message":"no"}}`, ""},
		{"neither", `{"v":1,"id":"r-1"}`, "either tokens or an error"},
		{"both", `{"v":1,"id":"r-1","error":{"code":"x"},"tokens":[{"name":"a","service":"rtc","token":"t","issued_at":1,"expires_at":2}]}`, "either tokens or an error"},
		{"no code", `{"v":1,"id":"r-1","error":{"message":"x"}}`, "no code"},
		{"no id", `{"v":1,"error":{"code":"x"}}`, "no id"},
		{"no token", `{"v":1,"id":"r","tokens":[{"name":"a","service":"rtc","issued_at":1,"expires_at":2}]}`, "lacks name"},
		{"backwards", `{"v":1,"id":"r","tokens":[{"name":"a","service":"rtc","token":"t","issued_at":5,"expires_at":5}]}`, "not after issued_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeReply([]byte(tc.payload))
			checkErr(t, err, tc.err)
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	in := Reply{V: SchemaVersion, ID: PushPrefix + "1", Tokens: []Grant{{Name: "video", Service: "rtc", Channel: "a&b<c>", Token: "007", IssuedAt: 1, ExpiresAt: 2, TTL: 1, KID: "k"}}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `\u0026`) || strings.HasSuffix(string(b), "\n") {
		t.Fatalf("encoding escapes HTML or ends in a newline: %s", b)
	}
	out, err := DecodeReply(b)
	if err != nil {
		t.Fatal(err)
	}
	if !out.IsPush() || out.Tokens[0].Channel != "a&b<c>" {
		t.Fatalf("round trip gave %+v", out)
	}
	if _, err := Encode(Request{V: 1, ID: strings.Repeat("x", MaxPayload)}); err == nil {
		t.Fatal("Encode accepted an oversize message")
	}
}
