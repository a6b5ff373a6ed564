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

// hmacLong is HMAC-SHA256 through crypto/hmac, for a certificate too long
// for hmacShort (only Verify can be given one). Taking the key by value
// keeps the callers' buffers off the heap.
func hmacLong(key [4]byte, msg string) [sha256.Size]byte {
	h := hmac.New(sha256.New, key[:])
	h.Write([]byte(msg))
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
		k1 = hmacLong(ts, cert)
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

// sign returns the signature of content under cert. It is the reference
// path, used by Verify; Build signs in place.
func sign(cert string, issueTs, salt uint32, content []byte) [sha256.Size]byte {
	key := signingKey(cert, issueTs, salt)
	h := hmac.New(sha256.New, key[:])
	h.Write(content)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
