package accesstoken

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// MaxPayload caps the decompressed size of a token. Real tokens are a few
// hundred bytes; the cap keeps a decompression bomb from costing memory.
const MaxPayload = 64 << 10

// MaxTokenLen caps the length of a token string accepted by Parse.
const MaxTokenLen = 2 * MaxPayload

// ErrSignature is returned by Verify when no certificate signed the token.
var ErrSignature = errors.New("signature matches no certificate")

// Sign returns the signature of content under certificate cert, as Agora
// computes it: HMAC(key=HMAC(key=pack(salt), msg=HMAC(key=pack(issue_ts),
// msg=cert)), msg=content).
func sign(cert string, issueTs, salt uint32, content []byte) [sha256.Size]byte {
	var ts, sl [4]byte
	binary.LittleEndian.PutUint32(ts[:], issueTs)
	binary.LittleEndian.PutUint32(sl[:], salt)
	h := hmac.New(sha256.New, ts[:])
	h.Write([]byte(cert))
	k1 := h.Sum(nil)
	h = hmac.New(sha256.New, sl[:])
	h.Write(k1)
	k2 := h.Sum(nil)
	h = hmac.New(sha256.New, k2)
	h.Write(content)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// RandomSalt returns a salt in 1..99999999, as Agora's builders choose.
func RandomSalt() (uint32, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("read random salt: %w", err)
	}
	return binary.LittleEndian.Uint32(b[:])%99999999 + 1, nil
}

// Build signs the token with cert and returns its string form. IssueTs and
// Salt must be set (see Builder for defaults); the fields are validated
// first.
func (t *Token) Build(cert string) (string, error) {
	if err := ValidateHex32("app certificate", cert); err != nil {
		return "", err
	}
	if err := t.Validate(); err != nil {
		return "", err
	}
	w := packer{buf: make([]byte, 0, 256)}
	// Reserve room for the packed signature (u16 length + 32 bytes).
	w.buf = w.buf[:2+sha256.Size]
	start := len(w.buf)
	w.str(t.AppID)
	w.u32(t.IssueTs)
	w.u32(t.Expire)
	w.u32(t.Salt)
	packServices(&w, t.Services)
	sig := sign(cert, t.IssueTs, t.Salt, w.buf[start:])
	binary.LittleEndian.PutUint16(w.buf, sha256.Size)
	copy(w.buf[2:], sig[:])
	return encode(w.buf)
}

var zlibWriters = sync.Pool{New: func() any {
	return zlib.NewWriter(nil)
}}

func encode(payload []byte) (string, error) {
	var z bytes.Buffer
	z.Grow(len(payload))
	zw := zlibWriters.Get().(*zlib.Writer)
	zw.Reset(&z)
	_, err := zw.Write(payload)
	if err == nil {
		err = zw.Close()
	}
	zlibWriters.Put(zw)
	if err != nil {
		return "", fmt.Errorf("compress token: %w", err)
	}
	return Version + base64.StdEncoding.EncodeToString(z.Bytes()), nil
}

// Parse decodes a token string. It checks the structure only; use Verify
// to check the signature. A token carrying a service type this package
// does not know returns an *UnknownServiceError together with the token,
// whose known fields are readable and whose signature is verifiable.
func Parse(s string) (*Token, error) {
	if len(s) <= len(Version) {
		return nil, fmt.Errorf("token too short: %d bytes", len(s))
	}
	if s[:len(Version)] != Version {
		return nil, fmt.Errorf("token version %q is not %q", truncate(s, len(Version)), Version)
	}
	if len(s) > MaxTokenLen {
		return nil, fmt.Errorf("token too long: %d bytes (max %d)", len(s), MaxTokenLen)
	}
	raw, err := base64.StdEncoding.DecodeString(s[len(Version):])
	if err != nil {
		return nil, fmt.Errorf("token is not valid base64: %w", err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("token is not zlib data: %w", err)
	}
	payload, err := io.ReadAll(io.LimitReader(zr, MaxPayload+1))
	if err != nil {
		return nil, fmt.Errorf("decompress token: %w", err)
	}
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("token payload exceeds %d bytes", MaxPayload)
	}
	return parsePayload(payload)
}

func parsePayload(payload []byte) (*Token, error) {
	r := reader{buf: payload}
	sig := r.bytes("signature")
	start := r.off
	t := &Token{}
	t.AppID = r.str("app_id")
	t.IssueTs = r.u32("issue_ts")
	t.Expire = r.u32("expire")
	t.Salt = r.u32("salt")
	n := r.u16("service count")
	if r.err != nil {
		return nil, r.err
	}
	t.Signature = append([]byte(nil), sig...)
	t.signed = payload[start:]
	var unknown error
	for i := 0; i < int(n) && r.err == nil; i++ {
		st := ServiceType(r.u16("service type"))
		if r.err != nil {
			break
		}
		if !st.Known() {
			// The layout of an unknown service is unknown, so nothing
			// after it can be read; keep what came before.
			unknown = &UnknownServiceError{Type: uint16(st)}
			break
		}
		svc := Service{Type: st}
		unpackService(&r, &svc)
		if r.err == nil {
			t.Services = append(t.Services, svc)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if unknown != nil {
		return t, unknown
	}
	if r.off != len(r.buf) {
		return nil, fmt.Errorf("token has %d trailing bytes after its services", len(r.buf)-r.off)
	}
	return t, nil
}

// UnknownServiceError reports a service type this package cannot decode.
type UnknownServiceError struct{ Type uint16 }

func (e *UnknownServiceError) Error() string {
	return fmt.Sprintf("token carries unknown service type %d", e.Type)
}

// Verify checks the token's signature against each certificate in turn and
// returns the index of the one that signed it, or ErrSignature. The
// comparison is constant-time.
func (t *Token) Verify(certs ...string) (int, error) {
	if t.signed == nil {
		return -1, errors.New("token was not parsed; nothing to verify")
	}
	for i, c := range certs {
		sig := sign(c, t.IssueTs, t.Salt, t.signed)
		if hmac.Equal(sig[:], t.Signature) {
			return i, nil
		}
	}
	return -1, ErrSignature
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
