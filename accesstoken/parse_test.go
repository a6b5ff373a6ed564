package accesstoken

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// zlibToken wraps a payload as a token with the standard library alone.
func zlibToken(payload []byte) string {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(payload)
	zw.Close()
	return Version + base64.StdEncoding.EncodeToString(z.Bytes())
}

// rawToken base64-encodes raw bytes as a token.
func rawToken(raw []byte) string { return Version + base64.StdEncoding.EncodeToString(raw) }

// le builds little-endian test payloads.
type le struct{ b []byte }

func (w *le) u16(v uint16) *le  { w.b = binary.LittleEndian.AppendUint16(w.b, v); return w }
func (w *le) u32(v uint32) *le  { w.b = binary.LittleEndian.AppendUint32(w.b, v); return w }
func (w *le) str(s string) *le  { w.u16(uint16(len(s))); w.b = append(w.b, s...); return w }
func (w *le) raw(b ...byte) *le { w.b = append(w.b, b...); return w }

// header packs app id, issue_ts 1111111, expire 600, salt 1 and the
// service count.
func header(services uint16) *le {
	return (&le{}).str(testAppID).u32(1111111).u32(600).u32(1).u16(services)
}

// signed prepends an HMAC signature computed with crypto/hmac, as an
// independent check of our own signing, for the issue_ts and salt of
// header.
func signed(cert string, content []byte) []byte {
	return signedAt(cert, 1111111, 1, content)
}

// signedAt is signed for any issue_ts and salt.
func signedAt(cert string, issueTs, saltV uint32, content []byte) []byte {
	mac := func(key, msg []byte) []byte {
		h := hmac.New(sha256.New, key)
		h.Write(msg)
		return h.Sum(nil)
	}
	var ts, salt [4]byte
	binary.LittleEndian.PutUint32(ts[:], issueTs)
	binary.LittleEndian.PutUint32(salt[:], saltV)
	key := mac(salt[:], mac(ts[:], []byte(cert)))
	sig := mac(key, content)
	return append((&le{}).u16(uint16(len(sig))).raw(sig...).b, content...)
}

func validRTCToken(t *testing.T) string {
	t.Helper()
	b := &Builder{AppID: testAppID, Certificate: testCert, Now: fixedNow, Salt: fixedSalt}
	tok, err := b.RTCWithUID("cam-42", 2882341273, RolePublisher, 600, 600)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestParseRejects(t *testing.T) {
	valid := validRTCToken(t)
	raw, _ := base64.StdEncoding.DecodeString(valid[3:])
	badSum := bytes.Clone(raw)
	badSum[len(badSum)-1] ^= 0xff
	rtc := header(1).u16(1).u16(0).str("c").str("").b
	tests := []struct {
		name, token, want string
	}{
		{"empty", "", `does not start with version "007"`},
		{"short", "0", `does not start with version "007" (got "0")`},
		{"wrong version", "006eJxTYA", `does not start with version "007" (got "006")`},
		{"version only", "007", "has a version but no content"},
		{"zero bytes", "007AAAA", "not zlib data: zlib: invalid header"},
		{"bad base64", "007AAAAA", "not valid base64: illegal base64 data at input byte 4"},
		{"bad base64 char", "007eJx*", "not valid base64"},
		{"not zlib", rawToken([]byte("hello, world")), "not zlib data: zlib: invalid header"},
		{"bad checksum", rawToken(badSum), "decompress token: zlib: invalid checksum"},
		{"truncated zlib", rawToken(raw[:len(raw)-6]), "decompress token: unexpected EOF"},
		{"bytes after zlib", rawToken(append(bytes.Clone(raw), 0, 1, 2)), "3 bytes after its zlib stream"},
		{"too long", Version + strings.Repeat("A", MaxTokenLen), "token too long"},
		{"bomb", zlibToken(make([]byte, 10<<20)), "payload exceeds 65536 bytes"},
		{"just over the cap", zlibToken(make([]byte, MaxPayload+1)), "payload exceeds 65536 bytes"},
		{"empty payload", zlibToken(nil), "payload is 0 bytes, too short for a signature"},
		{"short signature", zlibToken((&le{}).str("abc").raw(make([]byte, 40)...).b), "signature is 3 bytes, want 32"},
		{"no header", zlibToken(signed(testCert, nil)), "token truncated at app_id length (offset 34, need 2 bytes, have 0)"},
		{"truncated app id", zlibToken(signed(testCert, (&le{}).u16(32).raw('a').b)), "truncated at app_id (offset 36, need 32 bytes, have 1)"},
		{"truncated expire", zlibToken(signed(testCert, (&le{}).str(testAppID).u32(1).raw(1).b)), "truncated at expire"},
		{"no service count", zlibToken(signed(testCert, (&le{}).str(testAppID).u32(1).u32(1).u32(1).b)), "truncated at service count"},
		{"services missing", zlibToken(signed(testCert, header(3).b)), "truncated at services (offset 82, need 12 bytes, have 0)"},
		{"too many services", zlibToken(signed(testCert, header(MaxServices+1).b)), "declares 65 services, max 64"},
		{"hostile privilege count", zlibToken(signed(testCert, header(1).u16(1).u16(65535).b)), "truncated at rtc privileges (offset 86, need 393210 bytes, have 0)"},
		{"truncated channel", zlibToken(signed(testCert, header(1).u16(1).u16(0).u16(10).raw('c').b)), "truncated at rtc channel (offset"},
		{"missing uid", zlibToken(signed(testCert, header(1).u16(1).u16(0).str("c").b)), "truncated at rtc uid length"},
		{"truncated apaas role", zlibToken(signed(testCert, header(1).u16(7).u16(0).str("r").str("u").raw(1).b)), "truncated at apaas role"},
		{"hostile rtm2 counts", zlibToken(signed(testCert, header(1).u16(8).u16(0).str("u").u16(65535).b)), "truncated at rtm2 resource types"},
		{"hostile rtm2 resources", zlibToken(signed(testCert, header(1).u16(8).u16(0).str("u").u16(1).u16(0).u16(1).u16(0).u16(65535).b)), "truncated at rtm2 resources"},
		{"second service missing", zlibToken(signed(testCert, header(2).u16(1).u16(0).str("channel").str("").b)), "truncated at service type (offset 97"},
		{"trailing bytes", zlibToken(signed(testCert, append(bytes.Clone(rtc), 9, 9))), "2 trailing bytes after its services"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Parse(tt.token)
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			if tok != nil {
				t.Errorf("Parse returned a token with error %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseEveryTruncation(t *testing.T) {
	// Cutting a valid payload anywhere gives an error, never a panic or
	// a token.
	valid := validRTCToken(t)
	p := payload(t, valid)
	for n := range len(p) {
		tok, err := Parse(zlibToken(p[:n]))
		if err == nil || tok != nil {
			t.Fatalf("payload cut to %d of %d bytes: token %v, error %v", n, len(p), tok, err)
		}
	}
}

func TestParseUnknownServiceTypes(t *testing.T) {
	rtc := (&le{}).u16(1).u16(1).u16(1).u32(600).str("cam-42").str("7")
	tests := []struct {
		name     string
		content  []byte
		unknown  uint16
		services int
	}{
		{"type 11 after rtc", header(2).raw(rtc.b...).u16(11).u16(0).raw(1, 2, 3).b, 11, 1},
		{"type 0 first", header(2).u16(0).u16(0).raw(rtc.b...).b, 0, 0},
		{"type 65535", header(1).u16(65535).u16(0).b, 65535, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Parse(zlibToken(signed(testCert, tt.content)))
			var ue *UnknownServiceError
			if !errors.As(err, &ue) || ue.Type != tt.unknown {
				t.Fatalf("Parse error = %v, want UnknownServiceError{%d}", err, tt.unknown)
			}
			if !strings.Contains(err.Error(), "unknown service type") {
				t.Errorf("error %q does not name the problem", err)
			}
			if tok == nil {
				t.Fatal("no token returned with UnknownServiceError")
			}
			if tok.AppID != testAppID || tok.IssueTs != 1111111 || tok.Expire != 600 || tok.Salt != 1 {
				t.Errorf("header fields not readable: %+v", tok)
			}
			if len(tok.Services) != tt.services {
				t.Errorf("got %d known services, want %d", len(tok.Services), tt.services)
			}
			if tt.services == 1 && (tok.Services[0].Channel != "cam-42" || tok.Services[0].UID != "7") {
				t.Errorf("rtc service before the unknown one not readable: %+v", tok.Services[0])
			}
			if i, err := tok.Verify("00000000000000000000000000000000", testCert); i != 1 || err != nil {
				t.Errorf("Verify = %d, %v; want 1, nil", i, err)
			}
			if _, err := tok.Verify("00000000000000000000000000000000"); err != ErrSignature {
				t.Errorf("Verify(wrong certificate) = %v", err)
			}
		})
	}
}

func TestParseMemoryBound(t *testing.T) {
	// Payloads shaped to make a parser allocate as much as possible per
	// input byte, each near the size cap.
	const n = (MaxPayload - 200) / 2
	emptyResources := header(1).u16(8).u16(0).str("u").u16(1).u16(0).u16(1).u16(0).u16(n)
	for range n {
		emptyResources.u16(0)
	}
	privs := header(1).u16(1).u16(n / 3)
	for i := range n / 3 {
		privs.u16(uint16(i)).u32(1)
	}
	privs.str("c").str("")
	services := header(MaxServices)
	for range MaxServices {
		services.u16(4).u16(0)
	}
	tests := []struct {
		name  string
		token string
	}{
		{"empty rtm2 resources", zlibToken(signed(testCert, emptyResources.b))},
		{"many privileges", zlibToken(signed(testCert, privs.b))},
		{"many services", zlibToken(signed(testCert, services.b))},
		{"bomb", zlibToken(make([]byte, 16<<20))},
		{"long garbage", Version + strings.Repeat("eJx", MaxTokenLen/3-1)},
	}
	const bound = 1 << 20
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			Parse(tt.token) // warm the pooled buffers
			least := uint64(1 << 62)
			for range 5 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				Parse(tt.token)
				runtime.ReadMemStats(&after)
				least = min(least, after.TotalAlloc-before.TotalAlloc)
			}
			t.Logf("%s: %d bytes allocated", tt.name, least)
			if least > bound {
				t.Errorf("Parse allocated %d bytes, bound %d", least, bound)
			}
		})
	}
}

// TestSignMatchesHMAC checks sign, on and off its stack path, against
// crypto/hmac.
func TestSignMatchesHMAC(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 65, 200, signOnStack - 1, signOnStack, signOnStack + 1, 70000} {
		content := bytes.Repeat([]byte{byte(n)}, n)
		want := signedAt(testCert, 1763800000, 424242, content)[2:sigHeader]
		if got := sign(testCert, 1763800000, 424242, content); !bytes.Equal(got[:], want) {
			t.Errorf("sign of %d bytes differs from crypto/hmac", n)
		}
	}
	// Verify may be given any certificate; one longer than a block is the
	// message of the first HMAC, hashed off the stack.
	for _, cert := range []string{"", "x", strings.Repeat("c", 64), strings.Repeat("c", 65), strings.Repeat("c", 300)} {
		want := signedAt(cert, 7, 8, []byte("content"))[2:sigHeader]
		if got := sign(cert, 7, 8, []byte("content")); !bytes.Equal(got[:], want) {
			t.Errorf("sign with a %d-byte certificate differs from crypto/hmac", len(cert))
		}
	}
}

// TestParseGarbage feeds 64 KiB tokens of garbage in the shapes that get
// furthest: Parse must reject each and, its pooled buffers warm, allocate
// at most a few KiB for it.
func TestParseGarbage(t *testing.T) {
	const size = 64 << 10
	rng := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	// as64 base64-encodes the start of raw into a token of the size
	// (less the 3 characters base64 cannot fill).
	as64 := func(raw []byte) string { return rawToken(raw[:(size-len(Version))/4*3]) }
	valid, _ := base64.StdEncoding.DecodeString(validRTCToken(t)[len(Version):])
	tests := map[string]string{
		"random bytes":             Version + string(random(size-len(Version))),
		"random base64":            as64(random(size)),
		"zlib header, random":      as64(append([]byte{0x78, 0x9c}, random(size)...)),
		"fixed block, random":      as64(append([]byte{0x78, 0x01, 0x03}, random(size)...)),
		"stored block, random":     as64(append([]byte{0x78, 0x01, 0x00, 0xff, 0xff, 0x00, 0x00}, random(size)...)),
		"dynamic block, random":    as64(append([]byte{0x78, 0x9c, 0x05}, random(size)...)),
		"zeros":                    as64(make([]byte, size)),
		"valid token, then random": validRTCToken(t) + string(random(size-len(validRTCToken(t)))),
		"valid zlib, then random":  as64(append(valid, random(size)...)),
	}
	const bound = 4 << 10
	for name, token := range tests {
		t.Run(name, func(t *testing.T) {
			if len(token) < size-3 || len(token) > size {
				t.Fatalf("token is %d bytes, want %d", len(token), size)
			}
			if tok, err := Parse(token); err == nil {
				t.Fatalf("Parse accepts garbage: %v", tok)
			}
			least := uint64(1 << 62)
			for range 5 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				_, err := Parse(token)
				runtime.ReadMemStats(&after)
				if err == nil {
					t.Fatal("Parse accepts garbage")
				}
				least = min(least, after.TotalAlloc-before.TotalAlloc)
			}
			_, err := Parse(token)
			t.Logf("%d bytes allocated: %v", least, err)
			if least > bound {
				t.Errorf("Parse allocated %d bytes for garbage, bound %d", least, bound)
			}
		})
	}
}
