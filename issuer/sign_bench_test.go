package issuer

import (
	"strings"
	"testing"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/secretfile"
	"agoratokens/wire"
)

// BenchmarkSignRequest is the issuer's signing path for one request of
// a device asking for its two tokens (an RTC publisher token and an RTM
// token), end to end and step by step, so that the HTTP and MQTT figures
// (which add transport, authentication, rate limiting and replay) can be
// read against it: decode the request, apply the policy, sign each grant
// (salt from crypto/rand, as in production), encode the reply. "codec"
// is the two tokens built directly with accesstoken, the floor of "sign".
func BenchmarkSignRequest(b *testing.B) {
	const (
		appID  = "970ca35de60c44645bbae8a215061b33"
		cert   = "5cfd2fd1755d40ecb72977518be15d3b"
		device = "cam-42"
	)
	policy, err := ParsePolicy(strings.NewReader(`
rules:
  - match: "cam-*"
    tokens:
      video:  {service: rtc, channel: "cam-{device}", uid: "{uid}", role: publisher, ttl: 1h}
      signal: {service: rtm, user: "{device}", ttl: 1h}
`), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	signer, err := NewSigner(appID, []Certificate{{ID: "primary", Value: secretfile.NewSecret(cert)}}, "primary", nil)
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"v":1,"id":"r-17","tokens":["video","signal"]}`)
	now := time.Unix(1763800000, 0)

	// One request, the way decide and answerMQTT do it, without their
	// logging, metrics, rate limiter and replay cache.
	request := func(b *testing.B) []byte {
		req, err := wire.DecodeRequest(payload)
		if err != nil {
			b.Fatal(err)
		}
		grants, err := policy.Grants(device, req.Tokens)
		if err != nil {
			b.Fatal(err)
		}
		out := make([]wire.Grant, 0, len(grants))
		for _, g := range grants {
			wg, err := signer.Sign(g, now)
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, wg)
		}
		reply, err := wire.Encode(&wire.Reply{V: wire.SchemaVersion, ID: req.ID, IssuedAt: now.Unix(), Tokens: out})
		if err != nil {
			b.Fatal(err)
		}
		return reply
	}
	reply := request(b)
	if got, err := wire.DecodeReply(reply); err != nil || len(got.Tokens) != 2 {
		b.Fatalf("reply %s: %v", reply, err)
	}
	grants, err := policy.Grants(device, []string{"video", "signal"})
	if err != nil {
		b.Fatal(err)
	}
	signed := make([]wire.Grant, len(grants))
	for i, g := range grants {
		if signed[i], err = signer.Sign(g, now); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			request(b)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := wire.DecodeRequest(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("policy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := policy.Grants(device, []string{"video", "signal"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, g := range grants {
				if _, err := signer.Sign(g, now); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := wire.Encode(&wire.Reply{V: wire.SchemaVersion, ID: "r-17", IssuedAt: now.Unix(), Tokens: signed}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		bl := &accesstoken.Builder{AppID: appID, Certificate: cert, Now: func() time.Time { return now }}
		uid := grants[0].UID
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bl.RTCWithAccount("cam-"+device, uid, accesstoken.RolePublisher, 3600, 3600); err != nil {
				b.Fatal(err)
			}
			if _, err := bl.RTM(device, "", 3600); err != nil {
				b.Fatal(err)
			}
		}
	})
}
