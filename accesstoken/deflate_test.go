package accesstoken

import (
	"bytes"
	"compress/zlib"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// inflateStd inflates a zlib stream with the standard library alone.
func inflateStd(t testing.TB, z []byte) []byte {
	t.Helper()
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("zlib header: %v", err)
	}
	p, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return p
}

func TestZlibRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	// Random bytes, a run that is compressible but touches one hash
	// bucket only, then the random bytes again, 41 KB later: the hash
	// table still points at them, beyond the window, and matches must
	// not reach back more than 32 KiB.
	far := append(random(1000), bytes.Repeat([]byte{'a'}, 40000)...)
	far = append(far, far[:1000]...)
	tests := []struct {
		name   string
		p      []byte
		stored bool // incompressible: expect stored blocks
	}{
		{"empty", nil, false},
		{"one byte", []byte{0xff}, false},
		{"three bytes", []byte("abc"), false},
		{"four equal bytes", []byte("aaaa"), false},
		{"run of 1000", bytes.Repeat([]byte{7}, 1000), false},
		{"run of 258+4", bytes.Repeat([]byte("x"), 262), false},
		{"text", []byte(strings.Repeat("the quick brown fox jumps over the lazy dog ", 30)), false},
		{"all bytes", func() []byte {
			var b []byte
			for i := range 256 {
				b = append(b, byte(i))
			}
			return append(b, b...)
		}(), false},
		{"random 130", random(130), true},
		{"random 70000", random(70000), true},
		{"far repeat", far, false},
		{"token payload", payload(t, validRTCToken(t)), false},
	}
	var m matcher
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Dirty the hash table first: the output must not depend on it.
			appendZlib(nil, random(500), &m)
			z := appendZlib(nil, tt.p, &m)
			if got := inflateStd(t, z); !bytes.Equal(got, tt.p) {
				t.Fatalf("round trip differs: %d bytes in, %d out", len(tt.p), len(got))
			}
			if again := appendZlib(nil, tt.p, &matcher{}); !bytes.Equal(again, z) {
				t.Errorf("output depends on the matcher's previous contents")
			}
			// Stored blocks cost 5 bytes per 65535, plus 6 of zlib.
			stored := len(tt.p) + 6 + 5*max(1, (len(tt.p)+maxStored-1)/maxStored)
			if len(z) > stored {
				t.Errorf("%d bytes compress to %d, more than stored (%d)", len(tt.p), len(z), stored)
			}
			if isStored := z[2]&6 == 0; isStored != tt.stored {
				t.Errorf("stored block = %v, want %v (%d bytes to %d)", isStored, tt.stored, len(tt.p), len(z))
			}
		})
	}
}

// FuzzZlib checks that the standard library inflates whatever the encoder
// writes back to its input.
func FuzzZlib(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	f.Add([]byte("abcabcabcabd\x00\x01\x00\x10\x0e\x00\x00\x02\x00\x10\x0e\x00\x00"))
	f.Fuzz(func(t *testing.T, p []byte) {
		var m matcher
		z := appendZlib(nil, p, &m)
		if got := inflateStd(t, z); !bytes.Equal(got, p) {
			t.Fatalf("round trip differs: %x in, %x out", p, got)
		}
	})
}

// TestTokensLookFamiliar: tokens start "007eJx" like every other
// builder's, which people and log filters recognise AccessToken2 by.
func TestTokensLookFamiliar(t *testing.T) {
	if tok := validRTCToken(t); !strings.HasPrefix(tok, "007eJx") {
		t.Errorf("token starts %q, want 007eJx", tok[:min(len(tok), 8)])
	}
}
