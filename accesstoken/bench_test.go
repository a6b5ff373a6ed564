package accesstoken

import (
	"bytes"
	"testing"

	ref "github.com/AgoraIO-Community/go-tokenbuilder/accesstoken"
	refrtc "github.com/AgoraIO-Community/go-tokenbuilder/rtctokenbuilder"
)

// The benchmarks run ours beside go-tokenbuilder's in the same process;
// scripts/bench-codec.sh prints the ratios. The token is the common case:
// an RTC publisher token for a numeric uid. The builds report the length
// of their token (go-tokenbuilder's varies by a character or so with its
// random issue_ts and salt).

func BenchmarkBuild(b *testing.B) {
	// The floor: the three HMAC-SHA256 every signer computes, over the
	// same content, with nothing else (no validation, packing, zlib or
	// base64). Build's target is at most 3x this.
	b.Run("floor/HMAC-SHA256x3", func(b *testing.B) {
		tok := &Token{AppID: testAppID, IssueTs: 1763800000, Expire: 3600, Salt: 12345678, Services: []Service{{
			Type: ServiceRTC, Channel: "cam-42", UID: "2882341273",
			Privileges: []Privilege{{1, 3600}, {2, 3600}, {3, 3600}, {4, 3600}},
		}}}
		w := packer{buf: make([]byte, blockSize, 512)}
		w.str(tok.AppID)
		w.u32(tok.IssueTs)
		w.u32(tok.Expire)
		w.u32(tok.Salt)
		packServices(&w, tok.Services)
		b.ReportAllocs()
		var sig [32]byte
		for b.Loop() {
			key := signingKey(testCert, tok.IssueTs, tok.Salt)
			sig = signInPlace(&key, w.buf)
		}
		if want := signedAt(testCert, tok.IssueTs, tok.Salt, w.buf[blockSize:]); !bytes.Equal(sig[:], want[2:sigHeader]) {
			b.Fatal("in-place signature differs from crypto/hmac's")
		}
	})
	b.Run("ours/Builder.RTCWithUID", func(b *testing.B) {
		bl := builderAt(1763800000, 12345678)
		b.ReportAllocs()
		var tok string
		for b.Loop() {
			var err error
			if tok, err = bl.RTCWithUID("cam-42", 2882341273, RolePublisher, 3600, 3600); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(tok)), "chars/token")
	})
	b.Run("ours/Token.Build", func(b *testing.B) {
		tok := &Token{AppID: testAppID, IssueTs: 1763800000, Expire: 3600, Salt: 12345678, Services: []Service{{
			Type: ServiceRTC, Channel: "cam-42", UID: "2882341273",
			Privileges: []Privilege{{1, 3600}, {2, 3600}, {3, 3600}, {4, 3600}},
		}}}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tok.Build(testCert); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-tokenbuilder/BuildTokenWithUid", func(b *testing.B) {
		b.ReportAllocs()
		var tok string
		for b.Loop() {
			var err error
			if tok, err = refrtc.BuildTokenWithUid(testAppID, testCert, "cam-42", 2882341273, refrtc.RolePublisher, 3600); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(tok)), "chars/token")
	})
}

func BenchmarkParse(b *testing.B) {
	token, err := builderAt(1763800000, 12345678).RTCWithUID("cam-42", 2882341273, RolePublisher, 3600, 3600)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ours/Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Parse(token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ours/Parse+Verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t, err := Parse(token)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := t.Verify(testCert); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-tokenbuilder/Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := ref.CreateAccessToken().Parse(token); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}
