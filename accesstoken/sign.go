package accesstoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// AccessToken2's signature is three nested HMAC-SHA256s:
//
//	key1 = HMAC(key = pack(issue_ts), msg = certificate)
//	key2 = HMAC(key = pack(salt),     msg = key1)
//	sig  = HMAC(key = key2,           msg = content)
//
// Every key is at most one SHA-256 block, so HMAC(k, m) is
// SHA256((k^opad) || SHA256((k^ipad) || m)) with k zero-padded to 64
// bytes. Computing it with sha256.Sum256 over stack buffers avoids the
// allocations of hmac.New (two digests and their pads) three times per
// token; Build also lays the content out behind 64 spare bytes so the
// inner hash of the last HMAC needs no copy.

const (
	blockSize = 64 // SHA-256 block size
	ipad      = 0x36
	opad      = 0x5c
)

// hmacShort returns HMAC-SHA256(key, msg) for len(key) <= 64 and
// len(msg) <= 64.
func hmacShort(key, msg []byte) [sha256.Size]byte {
	var buf [blockSize + 64]byte
	copy(buf[:], key)
	for i := range blockSize {
		buf[i] ^= ipad
	}
	n := copy(buf[blockSize:], msg)
	return hmacOuter(key, sha256.Sum256(buf[:blockSize+n]))
}

// hmacAlloc is HMAC-SHA256 through crypto/hmac, which allocates: for a
// certificate too long for hmacShort or content too long for sign's
// stack (only Verify can be given either). Callers pass copies declared
// on that path, so that only it moves them to the heap.
func hmacAlloc(key, msg []byte) [sha256.Size]byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// hmacOuter finishes an HMAC from its inner hash.
func hmacOuter(key []byte, inner [sha256.Size]byte) [sha256.Size]byte {
	var buf [blockSize + sha256.Size]byte
	copy(buf[:], key)
	for i := range blockSize {
		buf[i] ^= opad
	}
	copy(buf[blockSize:], inner[:])
	return sha256.Sum256(buf[:])
}

// signingKey derives key2 from the certificate, issue_ts and salt.
func signingKey(cert string, issueTs, salt uint32) [sha256.Size]byte {
	var ts, sl [4]byte
	binary.LittleEndian.PutUint32(ts[:], issueTs)
	binary.LittleEndian.PutUint32(sl[:], salt)
	var k1 [sha256.Size]byte
	if len(cert) <= 64 {
		var c [64]byte
		k1 = hmacShort(ts[:], c[:copy(c[:], cert)])
	} else {
		k := ts
		k1 = hmacAlloc(k[:], []byte(cert))
	}
	return hmacShort(sl[:], k1[:])
}

// signInPlace returns HMAC(key, buf[64:]), using buf[:64] as scratch for
// the inner pad.
func signInPlace(key *[sha256.Size]byte, buf []byte) [sha256.Size]byte {
	for i := range blockSize {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		buf[i] = k ^ ipad
	}
	return hmacOuter(key[:], sha256.Sum256(buf))
}

// signOnStack is the largest content (every real token's) that sign
// copies behind an inner pad on its stack; longer content goes through
// crypto/hmac, which allocates.
const signOnStack = 1024 - blockSize

// sign returns the signature of content under cert, for Verify, which
// must not write into the token; Build signs in place.
func sign(cert string, issueTs, salt uint32, content []byte) [sha256.Size]byte {
	key := signingKey(cert, issueTs, salt)
	if len(content) <= signOnStack {
		var buf [blockSize + signOnStack]byte
		n := copy(buf[blockSize:], content)
		return signInPlace(&key, buf[:blockSize+n])
	}
	k := key
	return hmacAlloc(k[:], content)
}
