package wire

import (
	"strings"
	"testing"
)

// FuzzDecode: whatever a device or an issuer sends, decoding returns a
// message or an error that says what is wrong; it never panics, and what
// it accepts re-encodes within the size limit.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"id":"r-1"}`,
		`{"v":1,"id":"r-1","tokens":["video","signal"]}`,
		`{"v":1,"id":"r","issued_at":1,"tokens":[{"name":"v","service":"rtc","token":"007","issued_at":1,"expires_at":2}]}`,
		`{"v":1,"id":"r","error":{"code":"rate_limited","message":"slow down","retry_after":5}}`,
		`{"v":2}`, `{"v":null}`, `{"v":1e999}`, `[]`, `null`, ``, `{`, "\x00",
		`{"v":1,"id":"` + strings.Repeat("a", 70) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if req, err := DecodeRequest(b); err == nil {
			if err := ValidateName("request id", req.ID); err != nil {
				t.Fatalf("accepted a request with a bad id: %v", err)
			}
			if _, err := Encode(req); err != nil {
				t.Fatalf("accepted request does not re-encode: %v", err)
			}
		} else if err.Error() == "" {
			t.Fatal("empty error")
		}
		if rep, err := DecodeReply(b); err == nil {
			if (rep.Error == nil) == (len(rep.Tokens) == 0) {
				t.Fatal("accepted a reply with neither or both of tokens and error")
			}
		} else if err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}
