package socket

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"agoratokens/agent/socketproto"
)

// maxErrorMessage bounds the message of a bad_request reply: the fixed
// text plus at most a couple of maxEcho-byte echoes.
const maxErrorMessage = 400

func TestDecodeRequest(t *testing.T) {
	long := strings.Repeat("x", socketproto.MaxLine-40)
	tests := []struct {
		name, line string
		want       socketproto.Request
		wantErr    string // empty: no error
	}{
		{"get", `{"op":"get","name":"video","id":"1"}`, socketproto.Request{Op: "get", Name: "video", ID: "1"}, ""},
		{"watch names", `{"op":"watch","names":["a","b"]}`, socketproto.Request{Op: "watch", Names: []string{"a", "b"}}, ""},
		{"unknown fields ignored", `{"op":"status","x":{"y":[1]}}`, socketproto.Request{Op: "status"}, ""},
		{"null", `null`, socketproto.Request{}, `missing "op"`},
		{"no op keeps id", `{"id":"q"}`, socketproto.Request{ID: "q"}, `missing "op"`},
		{"unknown op", `{"op":"delete"}`, socketproto.Request{Op: "delete"}, `unknown op "delete"`},
		{"long op is cut", `{"op":"` + long + `"}`, socketproto.Request{Op: long}, `unknown op "xxxx`},
		{"numeric id", `{"op":"get","id":7}`, socketproto.Request{}, "not a JSON object"},
		{"not an object", `[1]`, socketproto.Request{}, "not a JSON object"},
		{"truncated", `{"op":`, socketproto.Request{}, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := decodeRequest([]byte(tt.line))
			if !reflect.DeepEqual(req, tt.want) {
				t.Errorf("request = %+v, want %+v", req, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			case err != nil && len(err.Error()) > maxErrorMessage:
				t.Errorf("error message of %d bytes, want at most %d", len(err.Error()), maxErrorMessage)
			}
		})
	}
}

// FuzzDecodeRequest: whatever a client sends, the server's request
// decoding does not panic, answers a bad line with a short, valid UTF-8
// message, and accepts only the four ops, decoding what it accepts
// exactly as it would read it back.
func FuzzDecodeRequest(f *testing.F) {
	// The seeds are in testdata/fuzz/FuzzDecodeRequest; they run as
	// ordinary tests.
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := decodeRequest(line)
		if err != nil {
			msg := err.Error()
			if _, ok := err.(*errRequest); !ok {
				t.Fatalf("error %T, want *errRequest", err)
			}
			if len(msg) == 0 || len(msg) > maxErrorMessage || !utf8.ValidString(msg) {
				t.Fatalf("bad error message (%d bytes, valid UTF-8 %v): %.200q", len(msg), utf8.ValidString(msg), msg)
			}
			return
		}
		switch req.Op {
		case socketproto.OpGet, socketproto.OpWatch, socketproto.OpStatus, socketproto.OpRenew:
		default:
			t.Fatalf("accepted op %q", req.Op)
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", req, err)
		}
		again, err := decodeRequest(b)
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("%q decodes to %+v, re-encoded %s to %+v, %v", line, req, b, again, err)
		}
	})
}
