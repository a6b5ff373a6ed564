package accesstoken

import (
	"encoding/binary"
	"hash/adler32"
	"math/bits"
)

// Build's zlib encoder. A token payload is a few hundred bytes, and
// compress/flate at its default level clears about 600 KiB of hash tables
// on every Reset, which cost Build nine tenths of its time. Agora inflates
// any valid zlib stream, so Build writes its own: one deflate block with
// the fixed Huffman codes of RFC 1951 §3.2.6 and greedy LZ77 matches found
// through a small hash table, or a stored block where that is shorter
// (incompressible payloads). On real tokens it is as short as Go's
// default level within a few bytes: the matches that count are the
// repeated privilege expiries, and a dynamic code table costs more than
// it saves on 150 bytes.

const (
	// deflate, 32 KiB window, level hint "default" (decoders ignore the
	// hint): the header of every other builder's tokens, which keeps the
	// familiar "007eJx" start. (0x78<<8 | 0x9c) % 31 == 0.
	zlibHeader0 = 0x78
	zlibHeader1 = 0x9c

	minMatch   = 4     // shortest match looked for (the hash covers 4 bytes)
	maxMatch   = 258   // longest match deflate can code
	windowSize = 32768 // farthest distance deflate can code

	matchHashBits = 9 // 512 buckets: enough for token payloads, 2 KiB to clear

	maxStored = 65535 // longest stored block
)

// matcher is the LZ77 hash table: for each hash of 4 bytes, the last
// position (+1, so that zero is empty) where they occurred.
type matcher struct {
	head [1 << matchHashBits]int32
}

// fixedCode is one fixed Huffman code, bit-reversed for the LSB-first
// bit stream.
type fixedCode struct {
	code uint16
	len  uint8
}

// fixedLitLen holds the fixed literal/length codes (RFC 1951 §3.2.6).
var fixedLitLen = func() (t [288]fixedCode) {
	for s := range t {
		var c, n uint16
		switch {
		case s < 144:
			c, n = 0x30+uint16(s), 8
		case s < 256:
			c, n = 0x190+uint16(s-144), 9
		case s < 280:
			c, n = uint16(s-256), 7
		default:
			c, n = 0xc0+uint16(s-280), 8
		}
		t[s] = fixedCode{bits.Reverse16(c) >> (16 - n), uint8(n)}
	}
	return t
}()

// bitWriter appends a deflate bit stream, least significant bit first.
type bitWriter struct {
	out []byte
	acc uint64
	n   uint
}

// bits writes the n low bits of v; n + the pending bits stay below 64
// because it flushes whole 32-bit words.
func (w *bitWriter) bits(v uint32, n uint) {
	w.acc |= uint64(v) << w.n
	w.n += n
	if w.n >= 32 {
		w.out = binary.LittleEndian.AppendUint32(w.out, uint32(w.acc))
		w.acc >>= 32
		w.n -= 32
	}
}

// flush writes the pending bits, padding the last byte with zeros.
func (w *bitWriter) flush() {
	for w.n > 0 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.n -= min(w.n, 8)
	}
}

func (w *bitWriter) literal(b byte) {
	c := fixedLitLen[b]
	w.bits(uint32(c.code), uint(c.len))
}

// match writes a length (3..258) and a distance (1..32768).
func (w *bitWriter) match(length, dist int) {
	// Length: codes 257..264 are 3..10 with no extra bits, 285 is 258;
	// above 10, each group of four codes doubles the extra bits.
	var sym, extra, xbits int
	switch {
	case length == maxMatch:
		sym = 285
	case length <= 10:
		sym = 254 + length
	default:
		x := length - 3
		hb := bits.Len(uint(x)) - 1
		xbits = hb - 2
		sym = 257 + 4*(hb-1) + (x>>xbits)&3
		extra = x & (1<<xbits - 1)
	}
	c := fixedLitLen[sym]
	w.bits(uint32(c.code)|uint32(extra)<<c.len, uint(c.len)+uint(xbits))

	// Distance: codes 0..3 are 1..4; above, each pair of codes doubles
	// the extra bits. Fixed distance codes are the 5-bit code numbers.
	x := dist - 1
	dsym, dbits, dextra := x, 0, 0
	if x >= 4 {
		hb := bits.Len(uint(x)) - 1
		dbits = hb - 1
		dsym = 2*hb + (x>>dbits)&1
		dextra = x & (1<<dbits - 1)
	}
	w.bits(uint32(bits.Reverse8(uint8(dsym))>>3)|uint32(dextra)<<5, 5+uint(dbits))
}

func load32(p []byte, i int) uint32 { return binary.LittleEndian.Uint32(p[i:]) }

func hash4(v uint32) uint32 { return (v * 2654435761) >> (32 - matchHashBits) }

// appendZlib appends a zlib stream of p to dst. m is scratch; its
// contents on entry do not matter, so the output depends on p alone.
func appendZlib(dst, p []byte, m *matcher) []byte {
	dst = append(dst, zlibHeader0, zlibHeader1)
	start := len(dst)
	dst = appendFixedBlock(dst, p, m)
	// A stored block costs 5 bytes per 65535 of payload.
	if stored := len(p) + 5*max(1, (len(p)+maxStored-1)/maxStored); len(dst)-start > stored {
		dst = appendStoredBlocks(dst[:start], p)
	}
	return binary.BigEndian.AppendUint32(dst, adler32.Checksum(p))
}

// appendFixedBlock appends p as one final deflate block with fixed
// Huffman codes.
func appendFixedBlock(dst, p []byte, m *matcher) []byte {
	clear(m.head[:])
	w := bitWriter{out: dst}
	w.bits(1|1<<1, 3) // BFINAL, BTYPE 01 (fixed Huffman)
	for i := 0; i < len(p); {
		if i+minMatch <= len(p) {
			v := load32(p, i)
			h := hash4(v)
			cand := int(m.head[h]) - 1
			m.head[h] = int32(i + 1)
			if cand >= 0 && i-cand <= windowSize && load32(p, cand) == v {
				n := minMatch
				for i+n < len(p) && n < maxMatch && p[cand+n] == p[i+n] {
					n++
				}
				w.match(n, i-cand)
				// Index the positions inside the match too, so that a
				// later repeat of them is found.
				for j := i + 1; j < i+n && j+minMatch <= len(p); j++ {
					m.head[hash4(load32(p, j))] = int32(j + 1)
				}
				i += n
				continue
			}
		}
		w.literal(p[i])
		i++
	}
	c := fixedLitLen[256] // end of block
	w.bits(uint32(c.code), uint(c.len))
	w.flush()
	return w.out
}

// appendStoredBlocks appends p as stored blocks, the last one final.
func appendStoredBlocks(dst, p []byte) []byte {
	for {
		n := min(len(p), maxStored)
		final := byte(0)
		if n == len(p) {
			final = 1
		}
		dst = append(dst, final) // BFINAL, BTYPE 00, padded to the byte
		dst = binary.LittleEndian.AppendUint16(dst, uint16(n))
		dst = binary.LittleEndian.AppendUint16(dst, ^uint16(n))
		dst = append(dst, p[:n]...)
		p = p[n:]
		if final == 1 {
			return dst
		}
	}
}
