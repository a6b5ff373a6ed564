package socket

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"agoratokens/agent/socketproto"
)

// maxEcho bounds how much of a client's own text (an op, a name, a JSON
// error that quotes a literal) an error reply repeats: a 64 KiB line must
// not come back as a 64 KiB error.
const maxEcho = 64

// errRequest is a request line the server cannot act on; its text is the
// message of the bad_request reply.
type errRequest struct{ msg string }

func (e *errRequest) Error() string { return e.msg }

// decodeRequest parses one request line (its newline and any \r already
// removed) into a request with a known op. On failure the request holds
// what is worth echoing (its id, when the line was JSON) and the error is
// an *errRequest, whose message names the problem in a few hundred bytes
// at most.
func decodeRequest(line []byte) (socketproto.Request, error) {
	var req socketproto.Request
	if err := json.Unmarshal(line, &req); err != nil {
		return socketproto.Request{}, &errRequest{"request is not a JSON object with string fields op, id, name and a names list: " +
			truncate(err.Error(), 2*maxEcho)}
	}
	switch req.Op {
	case socketproto.OpGet, socketproto.OpStatus, socketproto.OpWatch, socketproto.OpRenew:
		return req, nil
	case "":
		return req, &errRequest{`missing "op" (one of get, watch, status, renew)`}
	default:
		return req, &errRequest{fmt.Sprintf("unknown op %s (want get, watch, status or renew)", quote(req.Op))}
	}
}

// quote quotes s for a message, cut to maxEcho bytes.
func quote(s string) string {
	if len(s) <= maxEcho {
		return strconv.Quote(s)
	}
	return strconv.Quote(truncate(s, maxEcho))
}

// truncate cuts s to at most n bytes (and whole UTF-8 sequences), marking
// the cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
