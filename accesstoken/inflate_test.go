package accesstoken

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"io"
	"strings"
	"testing"
)

// inflateRef inflates z as Parse's fallback does: compress/zlib, at most
// MaxPayload+1 bytes, no bytes after the stream.
func inflateRef(z []byte) ([]byte, bool) {
	br := bytes.NewReader(z)
	zr, err := zlib.NewReader(br)
	if err != nil {
		return nil, false
	}
	p, err := io.ReadAll(io.LimitReader(zr, MaxPayload+2))
	if err != nil || len(p) > MaxPayload+1 || br.Len() != 0 {
		return nil, false
	}
	return p, true
}

// checkInflate holds inflateFast to its contract on z: whatever it
// accepts, compress/zlib accepts with the same output. It reports
// whether inflateFast accepted z.
func checkInflate(t testing.TB, z []byte) bool {
	t.Helper()
	var out [MaxPayload + 1]byte
	n, ok := inflateFast(z, out[:])
	if !ok {
		return false
	}
	want, refOK := inflateRef(z)
	if !refOK {
		t.Fatalf("inflateFast accepts %x, which compress/zlib rejects", z)
	}
	if !bytes.Equal(out[:n], want) {
		t.Fatalf("inflateFast(%x) = %x, compress/zlib gives %x", z, out[:n], want)
	}
	return true
}

// stdZlib compresses p with compress/zlib at a level.
func stdZlib(t testing.TB, p []byte, level int) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, err := zlib.NewWriterLevel(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(p)
	zw.Close()
	return b.Bytes()
}

func TestInflateFastAccepts(t *testing.T) {
	token := payload(t, validRTCToken(t))
	text := []byte(strings.Repeat("abcabcabd 0123456789 ", 100))
	var m matcher
	tests := []struct {
		name string
		z    []byte
	}{
		{"ours: token", appendZlib(nil, token, &m)},
		{"ours: text", appendZlib(nil, text, &m)},
		{"ours: empty", appendZlib(nil, nil, &m)},
		{"ours: long run", appendZlib(nil, bytes.Repeat([]byte{9}, MaxPayload), &m)},
		{"ours: stored", appendZlib(nil, bytes.Repeat([]byte{0xff, 0x00, 0x80}, 7)[:20], &m)},
		{"compress/zlib stored", stdZlib(t, token, flate.NoCompression)},
		{"compress/zlib stored, 2 blocks", stdZlib(t, bytes.Repeat([]byte{1}, 65535+100)[:MaxPayload], flate.NoCompression)},
		{"compress/zlib fixed", stdZlib(t, []byte("hello, hello, hello"), flate.BestSpeed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !checkInflate(t, tt.z) {
				t.Errorf("inflateFast rejects a stream of stored and fixed blocks: %x", tt.z[:min(len(tt.z), 64)])
			}
		})
	}
}

func TestInflateFastRejects(t *testing.T) {
	var m matcher
	valid := appendZlib(nil, payload(t, validRTCToken(t)), &m)
	// Letters without repeats: a code of their own beats the fixed one.
	letters := make([]byte, 2000)
	for i := range letters {
		letters[i] = 'a' + byte(i*i*7919%26)
	}
	dynamic := stdZlib(t, letters, flate.DefaultCompression)
	if dynamic[2]&6 != 4 {
		t.Fatalf("compress/zlib wrote block type %d, want 2 (dynamic Huffman)", dynamic[2]>>1&3)
	}
	tests := []struct {
		name string
		z    []byte
	}{
		{"nothing", nil},
		{"header only", valid[:2]},
		{"preset dictionary", []byte{0x78, 0x20 | 0x1b, 0, 0, 0, 1}},
		{"bad check bits", append([]byte{0x78, 0x02}, valid[2:]...)},
		{"no checksum", valid[:len(valid)-4]},
		{"bad checksum", append(bytes.Clone(valid[:len(valid)-1]), valid[len(valid)-1]^1)},
		{"trailing byte", append(bytes.Clone(valid), 0)},
		{"dynamic block", dynamic},
		{"reserved block type", []byte{0x78, 0x01, 0x07, 0, 0, 0, 1}},
		{"stored length mismatch", []byte{0x78, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 'a', 0, 0x62, 0, 0x62}},
		{"distance before the start", []byte{0x78, 0x01, 0x63, 0x00, 0x02, 0x00, 0, 0, 0, 0}},
		{"too long", appendZlib(nil, make([]byte, MaxPayload+2), &m)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if checkInflate(t, tt.z) {
				t.Errorf("inflateFast accepts %x", tt.z)
			}
			// Only the dynamic block is valid zlib, for compress/zlib.
			if _, ok := inflateRef(tt.z); ok != (tt.name == "dynamic block") {
				t.Errorf("compress/zlib accepts it: %v", ok)
			}
		})
	}
}

// TestInflateFastCorrupt truncates a valid stream at every length and
// flips every bit of it: inflateFast must never accept what compress/zlib
// rejects, nor inflate differently.
func TestInflateFastCorrupt(t *testing.T) {
	var m matcher
	for _, p := range [][]byte{payload(t, validRTCToken(t)), []byte(strings.Repeat("xyz", 40))} {
		valid := appendZlib(nil, p, &m)
		for n := range len(valid) {
			checkInflate(t, valid[:n])
		}
		accepted := 0
		for i := range len(valid) * 8 {
			z := bytes.Clone(valid)
			z[i/8] ^= 1 << (i % 8)
			if checkInflate(t, z) {
				accepted++
			}
		}
		t.Logf("%d of %d bit flips still inflate (to what compress/zlib gives)", accepted, len(valid)*8)
	}
}

// FuzzInflate holds inflateFast to compress/zlib on arbitrary streams.
func FuzzInflate(f *testing.F) {
	var m matcher
	f.Add(appendZlib(nil, []byte("abcabcabcabc\x00\x01\x00\x10\x0e\x00\x00\x02\x00\x10\x0e\x00\x00"), &m))
	f.Add(stdZlib(f, []byte("stored"), flate.NoCompression))
	f.Add(stdZlib(f, []byte("hello, hello, hello"), flate.BestSpeed))
	f.Fuzz(func(t *testing.T, z []byte) {
		checkInflate(t, z)
	})
}
