package issuer

import "strconv"

// The fast path of POST /getToken's body. encoding/json was a quarter of
// the handler's time for a POST (reflection, a validating pre-scan, then
// the decode). What clients send is a flat object of the five known keys
// with plain string and integer values, and that is all decodeFlat
// takes; anything else (escapes, non-ASCII, other spellings of a key,
// null, floats, a key twice, nesting) goes to encoding/json as before,
// with its error messages. On what it takes, decodeFlat gives exactly
// what encoding/json gives (FuzzGetTokenBodyFlat checks it).

// flatDecoder is a request body with a fast path: decodeFlat reports
// whether it decoded body, leaving the receiver unchanged if not.
type flatDecoder interface {
	decodeFlat(body []byte) bool
}

func (b *getTokenBody) decodeFlat(body []byte) bool {
	var out getTokenBody
	var seen uint8
	p := skipJSONSpace(body, 0)
	if p >= len(body) || body[p] != '{' {
		return false
	}
	p = skipJSONSpace(body, p+1)
	if p < len(body) && body[p] == '}' {
		p++
	} else {
		for {
			k0, k1, ok := plainJSONString(body, p)
			if !ok {
				return false
			}
			p = skipJSONSpace(body, k1+1)
			if p >= len(body) || body[p] != ':' {
				return false
			}
			p = skipJSONSpace(body, p+1)
			var v0, v1 int
			num := p < len(body) && body[p] != '"'
			if num {
				v0, v1 = p, plainJSONInt(body, p)
				ok, p = v1 > v0, v1
			} else {
				v0, v1, ok = plainJSONString(body, p)
				p = v1 + 1
			}
			if !ok {
				return false
			}
			var bit uint8
			switch string(body[k0:k1]) { // no allocation: the compiler compares in place
			case "tokenType":
				bit, out.TokenType = 1, string(body[v0:v1])
			case "channel":
				bit, out.Channel = 2, string(body[v0:v1])
			case "role":
				bit, out.Role = 4, flexString{s: string(body[v0:v1]), set: true, num: num}
			case "uid":
				bit, out.UID = 8, flexString{s: string(body[v0:v1]), set: true, num: num}
			case "expire":
				n, err := strconv.ParseInt(string(body[v0:v1]), 10, 64)
				if err != nil || !num {
					return false
				}
				bit, out.Expire = 16, &n
			default:
				return false
			}
			if (num && bit <= 2) || seen&bit != 0 {
				return false // a number for a string field, or a key twice
			}
			seen |= bit
			p = skipJSONSpace(body, p)
			if p >= len(body) {
				return false
			}
			if body[p] == '}' {
				p++
				break
			}
			if body[p] != ',' {
				return false
			}
			p = skipJSONSpace(body, p+1)
		}
	}
	if skipJSONSpace(body, p) != len(body) {
		return false
	}
	*b = out
	return true
}

// skipJSONSpace returns the index of the first byte at or after p that
// is not JSON whitespace.
func skipJSONSpace(b []byte, p int) int {
	for p < len(b) && (b[p] == ' ' || b[p] == '\t' || b[p] == '\n' || b[p] == '\r') {
		p++
	}
	return p
}

// plainJSONString finds the JSON string starting at p when it holds only
// printable ASCII without escapes: its contents are b[start:end] and
// b[end] is the closing quote.
func plainJSONString(b []byte, p int) (start, end int, ok bool) {
	if p >= len(b) || b[p] != '"' {
		return 0, 0, false
	}
	for i := p + 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return p + 1, i, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// plainJSONInt returns the end of the JSON integer (-?(0|[1-9][0-9]*),
// no fraction or exponent) starting at p, or p if there is none.
func plainJSONInt(b []byte, p int) int {
	i := p
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return p
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E' || '0' <= b[i] && b[i] <= '9') {
		return p // a float, or a leading zero: encoding/json's call
	}
	return i
}
