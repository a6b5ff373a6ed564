package accesstoken

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// vector is one record of testdata/vectors/*.json: a token from Agora's
// own builders' tests with the fields it carries.
type vector struct {
	Lang        string          `json:"lang"`
	Test        string          `json:"test"`
	Kind        string          `json:"kind"`
	AppID       string          `json:"app_id"`
	Certificate string          `json:"app_certificate"`
	IssueTs     uint32          `json:"issue_ts"`
	Salt        uint32          `json:"salt"`
	Expire      uint32          `json:"expire"`
	Services    json.RawMessage `json:"services"`
	Token       string          `json:"token"`
	ByteExact   bool            `json:"go_zlib_byte_exact"`
}

func loadVectors(t testing.TB, file string) []vector {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "vectors", file))
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	var f struct {
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("decode %s: %v", file, err)
	}
	if len(f.Vectors) == 0 {
		t.Fatalf("%s holds no vectors", file)
	}
	return f.Vectors
}

// spec turns a vector into the token it describes, through the JSON
// schema (so the vectors test UnmarshalJSON as well).
func (v vector) spec(t *testing.T) *Token {
	t.Helper()
	doc, err := json.Marshal(map[string]any{
		"app_id": v.AppID, "issue_ts": v.IssueTs, "expire": v.Expire,
		"salt": v.Salt, "services": v.Services,
	})
	if err != nil {
		t.Fatal(err)
	}
	var tok Token
	if err := json.Unmarshal(doc, &tok); err != nil {
		t.Fatalf("vector services do not decode: %v", err)
	}
	return &tok
}

// payload decompresses a token with the standard library alone, so the
// comparison does not trust the code under test.
func payload(t testing.TB, token string) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(token[len(Version):])
	if err != nil {
		t.Fatalf("base64: %v", err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("zlib: %v", err)
	}
	p, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return p
}

// maxLengthRatio bounds how much longer our tokens may be than
// go-tokenbuilder's (compress/zlib at its default level) for the same
// payload: 5%.
const maxLengthRatio = 1.05

// checkLength fails if token ours is more than 5% longer than theirs, the
// same payload compressed by go-tokenbuilder or compress/zlib.
func checkLength(t *testing.T, ours, theirs string) {
	t.Helper()
	if float64(len(ours)) > maxLengthRatio*float64(len(theirs)) {
		t.Errorf("token is %d characters, more than %.0f%% over go-tokenbuilder's %d", len(ours), (maxLengthRatio-1)*100, len(theirs))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b)
}

func TestConformanceVectors(t *testing.T) {
	counts := map[string]int{}
	for _, file := range []string{"accesstoken2-go.json", "accesstoken2-other-langs.json"} {
		for _, v := range loadVectors(t, file) {
			t.Run(v.Lang+"/"+v.Test, func(t *testing.T) {
				want := v.spec(t)

				// Parse gives back every field.
				got, err := Parse(v.Token)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
					t.Errorf("parsed token differs from the vector\n got %s\nwant %s", g, w)
				}

				// It verifies with its certificate, and only with it.
				if i, err := got.Verify(v.Certificate); err != nil || i != 0 {
					t.Errorf("Verify(own certificate) = %d, %v", i, err)
				}
				other := "00000000000000000000000000000000"
				if i, err := got.Verify(other, v.Certificate); err != nil || i != 1 {
					t.Errorf("Verify(other, own) = %d, %v; want 1, nil", i, err)
				}
				if _, err := got.Verify(other); err != ErrSignature {
					t.Errorf("Verify(other certificate) = %v, want ErrSignature", err)
				}

				// Rebuilding from the fields gives the same payload, in a
				// token at most 5% longer than Go's compress/zlib would
				// make it (which reproduces the byte-exact vectors).
				built, err := want.Build(v.Certificate)
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				if !bytes.Equal(payload(t, built), payload(t, v.Token)) {
					t.Errorf("rebuilt payload differs\n got %x\nwant %x", payload(t, built), payload(t, v.Token))
				}
				goZlib := zlibToken(payload(t, v.Token))
				if v.ByteExact && goZlib != v.Token {
					t.Errorf("compress/zlib no longer reproduces the vector\n got %s\nwant %s", goZlib, v.Token)
				}
				checkLength(t, built, goZlib)
				counts[v.Kind]++
				if v.ByteExact {
					counts["byte-exact"]++
				}
			})
		}
	}
	t.Logf("vectors: %v", counts)
	if counts["byte-exact"] == 0 || counts["parse"] == 0 || counts["build"] == 0 {
		t.Errorf("vector files lack a kind of case: %v", counts)
	}
}
