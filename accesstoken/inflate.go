package accesstoken

import (
	"encoding/binary"
	"hash/adler32"
	"math/bits"
)

// Parse's fast inflater. Build's tokens (deflate.go), and the short
// tokens of several other builders, are zlib streams of stored and
// fixed-Huffman blocks only. inflateFast decodes exactly those straight
// into Parse's bounded output buffer, which doubles as the LZ77 window,
// so the common token costs no compress/flate reader (its Reset copies
// kilobytes of state, and a new one allocates a 32 KiB window). It
// accepts only a stream compress/zlib would accept with the same output;
// for anything else (a dynamic-Huffman block, any malformed, truncated
// or oversized stream) it reports false and Parse runs compress/zlib,
// whose error then says what is wrong. FuzzInflate holds it to that.

// fixedLitLenDecode maps the next 9 bits of the stream (LSB first) to
// the fixed literal/length symbol they start with and its code length.
var fixedLitLenDecode = func() (t [512]struct {
	sym uint16
	len uint8
}) {
	for s, c := range fixedLitLen {
		for e := 0; e < 1<<(9-c.len); e++ {
			t[int(c.code)|e<<c.len] = struct {
				sym uint16
				len uint8
			}{uint16(s), c.len}
		}
	}
	return t
}()

// Base values and extra bits of the length symbols 257..285 and the
// distance symbols 0..29 (RFC 1951 §3.2.5).
var (
	lengthBase = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
		35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
		3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
		257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
		7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// bitReader reads a deflate bit stream, least significant bit first.
type bitReader struct {
	in  []byte
	pos int // next byte of in to load
	acc uint64
	n   uint // bits in acc
}

// fill loads whole bytes while they fit; at the end of the input acc
// holds what is left. Away from the end it loads 8 bytes at once: the
// bits above n then hold part of the next byte, which the next fill ORs
// in again unchanged.
func (r *bitReader) fill() {
	if r.pos+8 <= len(r.in) {
		r.acc |= binary.LittleEndian.Uint64(r.in[r.pos:]) << r.n
		k := (63 - r.n) / 8
		r.pos += int(k)
		r.n += k * 8
		return
	}
	for r.n <= 56 && r.pos < len(r.in) {
		r.acc |= uint64(r.in[r.pos]) << r.n
		r.pos++
		r.n += 8
	}
}

// take returns the next n (<= 32) bits, or false at the end of input.
func (r *bitReader) take(n uint) (uint32, bool) {
	if r.n < n {
		r.fill()
		if r.n < n {
			return 0, false
		}
	}
	v := uint32(r.acc & (1<<n - 1))
	r.acc >>= n
	r.n -= n
	return v, true
}

// align drops the bits up to the next byte boundary and returns the
// offset in the input of that byte, handing the loaded bytes back.
func (r *bitReader) align() int {
	r.n -= r.n % 8
	off := r.pos - int(r.n/8)
	r.pos, r.acc, r.n = off, 0, 0
	return off
}

// inflateFast inflates the zlib stream z into out and returns the number
// of bytes written, or false if z is not a valid zlib stream of stored
// and fixed-Huffman blocks that ends exactly at its Adler-32 checksum and
// inflates to at most len(out) bytes.
func inflateFast(z, out []byte) (int, bool) {
	// Header: deflate, window at most 32 KiB, check bits, no dictionary.
	if len(z) < 2 || z[0]&0x0f != 8 || z[0]>>4 > 7 || binary.BigEndian.Uint16(z)%31 != 0 || z[1]&0x20 != 0 {
		return 0, false
	}
	r := bitReader{in: z, pos: 2}
	n := 0
	for {
		hdr, ok := r.take(3)
		if !ok {
			return 0, false
		}
		switch hdr >> 1 {
		case 0:
			if n, ok = storedBlock(&r, out, n); !ok {
				return 0, false
			}
		case 1:
			if n, ok = fixedBlock(&r, out, n); !ok {
				return 0, false
			}
		default: // dynamic Huffman, or the reserved type
			return 0, false
		}
		if hdr&1 == 1 {
			break
		}
	}
	off := r.align()
	if len(z)-off != 4 || binary.BigEndian.Uint32(z[off:]) != adler32.Checksum(out[:n]) {
		return 0, false
	}
	return n, true
}

func storedBlock(r *bitReader, out []byte, n int) (int, bool) {
	off := r.align()
	if len(r.in)-off < 4 {
		return 0, false
	}
	size := int(binary.LittleEndian.Uint16(r.in[off:]))
	if binary.LittleEndian.Uint16(r.in[off+2:]) != ^uint16(size) ||
		len(r.in)-off-4 < size || len(out)-n < size {
		return 0, false
	}
	copy(out[n:], r.in[off+4:off+4+size])
	r.pos = off + 4 + size
	return n + size, true
}

func fixedBlock(r *bitReader, out []byte, n int) (int, bool) {
	// The loop keeps the reader in locals: through r, every store to out
	// would make the compiler reload it.
	in, pos, acc, nb := r.in, r.pos, r.acc, r.n
	for {
		// Enough bits for a length with its extra bits and a distance
		// with its extra bits (9+5+5+13), unless the input ends first.
		if nb < 32 {
			if pos+8 <= len(in) {
				acc |= binary.LittleEndian.Uint64(in[pos:]) << nb
				k := (63 - nb) / 8
				pos += int(k)
				nb += k * 8
			} else {
				for nb <= 56 && pos < len(in) {
					acc |= uint64(in[pos]) << nb
					pos++
					nb += 8
				}
			}
		}
		e := fixedLitLenDecode[acc&511]
		if uint(e.len) > nb {
			return 0, false
		}
		acc >>= e.len
		nb -= uint(e.len)
		if e.sym < 256 {
			if n >= len(out) {
				return 0, false
			}
			out[n] = byte(e.sym)
			n++
			continue
		}
		if e.sym == 256 {
			r.pos, r.acc, r.n = pos, acc, nb
			return n, true
		}
		if e.sym > 285 {
			return 0, false
		}
		i := e.sym - 257
		if nb < uint(lengthExtra[i])+5 {
			return 0, false
		}
		k := uint(lengthExtra[i])
		length := int(lengthBase[i]) + int(acc&(1<<k-1))
		acc >>= k
		nb -= k
		ds := bits.Reverse8(uint8(acc&31)) >> 3
		acc >>= 5
		nb -= 5
		if ds >= 30 || nb < uint(distExtra[ds]) {
			return 0, false
		}
		k = uint(distExtra[ds])
		dist := int(distBase[ds]) + int(acc&(1<<k-1))
		acc >>= k
		nb -= k
		if dist > n || len(out)-n < length {
			return 0, false
		}
		// The copy may overlap its own output (dist < length): byte by
		// byte, as deflate defines it.
		for j := range length {
			out[n+j] = out[n+j-dist]
		}
		n += length
	}
}
