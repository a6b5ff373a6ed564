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

// MaxServices caps the number of services Parse accepts in one token.
// Agora's builders put at most six in one; the cap bounds what a hostile
// token can make Parse allocate.
const MaxServices = 64

// ErrSignature is returned by Verify when no certificate signed the token.
var ErrSignature = errors.New("signature matches no certificate")

// RandomSalt returns a salt in 1..99999999, as Agora's builders choose.
func RandomSalt() (uint32, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("read random salt: %w", err)
	}
	return binary.LittleEndian.Uint32(b[:])%99999999 + 1, nil
}

// sigHeader is the packed signature in front of the content: a u16 length
// and the 32 bytes of HMAC-SHA256.
const sigHeader = 2 + sha256.Size

// buildState is the reusable scratch of one Build: the packing buffer,
// the compressor's hash table and the output buffers. With it, Build
// allocates only the returned string.
type buildState struct {
	buf []byte // blockSize bytes of HMAC scratch, then the content
	m   matcher
	z   []byte
	out []byte
}

var buildStates = sync.Pool{New: func() any {
	return &buildState{buf: make([]byte, 0, 512), z: make([]byte, 0, 512), out: make([]byte, 0, 512)}
}}

// Build signs the token with cert and returns its string form. IssueTs and
// Salt must be set (see Builder for defaults); the fields are validated
// first. The payload is byte-identical to Agora's builders'; its zlib
// stream is our own (see deflate.go), which Agora inflates like any other.
func (t *Token) Build(cert string) (string, error) {
	if err := ValidateHex32("app certificate", cert); err != nil {
		return "", err
	}
	if err := t.Validate(); err != nil {
		return "", err
	}
	st := buildStates.Get().(*buildState)
	defer buildStates.Put(st)

	w := packer{buf: st.buf[:blockSize]}
	w.str(t.AppID)
	w.u32(t.IssueTs)
	w.u32(t.Expire)
	w.u32(t.Salt)
	packServices(&w, t.Services)
	st.buf = w.buf[:0] // keep the grown buffer for the next token

	key := signingKey(cert, t.IssueTs, t.Salt)
	sig := signInPlace(&key, w.buf)
	// The packed signature goes right in front of the content, over the
	// tail of the scratch bytes.
	p := w.buf[blockSize-sigHeader:]
	binary.LittleEndian.PutUint16(p, sha256.Size)
	copy(p[2:], sig[:])
	return st.encode(p), nil
}

func (st *buildState) encode(payload []byte) string {
	st.z = appendZlib(st.z[:0], payload, &st.m)
	st.out = append(st.out[:0], Version...)
	st.out = base64.StdEncoding.AppendEncode(st.out, st.z)
	return string(st.out)
}

// parseState is the reusable scratch of one Parse: the token text, its
// base64-decoded bytes, the inflated payload (at most MaxPayload+1 bytes)
// and, made on first need, a zlib reader reset for each token that
// inflateFast leaves to it.
type parseState struct {
	text, raw []byte
	out       [MaxPayload + 1]byte
	br        bytes.Reader
	zr        io.ReadCloser
}

// emptyZlib is a valid zlib stream of no data, used to create the pooled
// zlib readers (zlib.NewReader reads a header at once).
var emptyZlib = []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01}

var parseStates = sync.Pool{New: func() any { return &parseState{} }}

// zlibReader returns st's zlib reader, reset to read raw.
func (st *parseState) zlibReader(raw []byte) (io.Reader, error) {
	if st.zr == nil {
		st.br.Reset(emptyZlib)
		zr, err := zlib.NewReader(&st.br)
		if err != nil {
			panic("accesstoken: zlib rejects the empty stream: " + err.Error())
		}
		st.zr = zr
	}
	st.br.Reset(raw)
	return st.zr, st.zr.(zlib.Resetter).Reset(&st.br, nil)
}

// Parse decodes a token string. It checks the structure only; use Verify
// to check the signature. A token carrying a service type this package
// does not know returns an *UnknownServiceError together with the token,
// whose known fields are readable and whose signature is verifiable.
//
// Parse never panics. Whatever the input, it reads at most MaxTokenLen
// bytes of text and MaxPayload+1 bytes of inflated payload into pooled
// buffers, and allocates only in proportion to the payload it accepts.
func Parse(s string) (*Token, error) {
	if len(s) < len(Version) || s[:len(Version)] != Version {
		return nil, fmt.Errorf("token does not start with version %q (got %q)", Version, truncate(s, len(Version)))
	}
	if len(s) == len(Version) {
		return nil, errors.New("token has a version but no content")
	}
	if len(s) > MaxTokenLen {
		return nil, fmt.Errorf("token too long: %d bytes (max %d)", len(s), MaxTokenLen)
	}
	st := parseStates.Get().(*parseState)
	defer parseStates.Put(st)
	payload, err := st.inflate(s[len(Version):])
	if err != nil {
		return nil, err
	}
	return parsePayload(payload)
}

// inflate decodes the base64 text and inflates it into st.out.
func (st *parseState) inflate(text string) ([]byte, error) {
	st.text = append(st.text[:0], text...)
	st.raw = st.raw[:0]
	// AppendDecode sizes its output as if unpadded: at most 3/4 of the
	// text, rounded up.
	if n := len(st.text)*3/4 + 3; cap(st.raw) < n {
		st.raw = make([]byte, 0, n)
	}
	raw, err := base64.StdEncoding.AppendDecode(st.raw, st.text)
	if err != nil {
		return nil, fmt.Errorf("token is not valid base64: %w", err)
	}
	st.raw = raw
	if n, ok := inflateFast(raw, st.out[:]); ok && n <= MaxPayload {
		return st.out[:n], nil
	}
	zr, err := st.zlibReader(raw)
	if err != nil {
		return nil, fmt.Errorf("token is not zlib data: %w", err)
	}
	n := 0
	for {
		if n == len(st.out) {
			return nil, fmt.Errorf("token payload exceeds %d bytes", MaxPayload)
		}
		m, err := zr.Read(st.out[n:])
		n += m
		if err == io.EOF {
			break // the zlib reader has checked the Adler-32 checksum
		}
		if err != nil {
			return nil, fmt.Errorf("decompress token: %w", err)
		}
	}
	if n > MaxPayload {
		return nil, fmt.Errorf("token payload exceeds %d bytes", MaxPayload)
	}
	if st.br.Len() != 0 {
		return nil, fmt.Errorf("token has %d bytes after its zlib stream", st.br.Len())
	}
	return st.out[:n], nil
}

// parsePayload decodes a decompressed token. It copies the payload once
// (as bytes for Verify and once as a string the text fields share).
func parsePayload(p []byte) (*Token, error) {
	if len(p) < sigHeader {
		return nil, fmt.Errorf("token payload is %d bytes, too short for a signature", len(p))
	}
	if n := binary.LittleEndian.Uint16(p); n != sha256.Size {
		return nil, fmt.Errorf("token signature is %d bytes, want %d", n, sha256.Size)
	}
	own := bytes.Clone(p)
	r := reader{buf: own, s: string(p), off: sigHeader}
	t := &Token{Signature: own[2:sigHeader:sigHeader], signed: own[sigHeader:]}
	t.AppID = r.str("app_id")
	t.IssueTs = r.u32("issue_ts")
	t.Expire = r.u32("expire")
	t.Salt = r.u32("salt")
	n := int(r.u16("service count"))
	if r.err != nil {
		return nil, r.err
	}
	if n > MaxServices {
		return nil, fmt.Errorf("token declares %d services, max %d", n, MaxServices)
	}
	// A service takes at least 4 bytes (type, privilege count).
	if !r.need(4*n, "services") {
		return nil, r.err
	}
	t.Services = make([]Service, 0, n)
	for range n {
		st := ServiceType(r.u16("service type"))
		if r.err != nil {
			return nil, r.err
		}
		if !st.Known() {
			// The layout of an unknown service is unknown, so nothing
			// after it can be read; keep what came before.
			return t, &UnknownServiceError{Type: uint16(st)}
		}
		t.Services = append(t.Services, Service{Type: st})
		unpackService(&r, &t.Services[len(t.Services)-1])
		r.scope = 0
		if r.err != nil {
			return nil, r.err
		}
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
