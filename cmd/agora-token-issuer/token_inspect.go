package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"agoratokens/accesstoken"
)

// Human-readable fields inspect adds to the codec's JSON. build ignores
// them: they are derived from issue_ts and expire.
const (
	fieldIssued  = "issued"
	fieldExpires = "expires"
)

func tokenInspect(env *tokenEnv, args []string) error {
	fs := newFlagSet(env, "inspect", "inspect [--compact] TOKEN|-\n\n"+
		"Print a token as JSON (no certificate needed). \"issued\" and \"expires\"\n"+
		"are issue_ts and issue_ts+expire in UTC (RFC 3339). TOKEN - reads stdin.")
	compact := fs.Bool("compact", false, "print the JSON on one line")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one TOKEN (or - for stdin), got %d arguments", len(pos))
	}
	s, err := readArg(env, pos[0], "token", accesstoken.MaxTokenLen)
	if err != nil {
		return err
	}
	t, err := accesstoken.Parse(s)
	if err != nil {
		// An unknown service type is an error here too: the JSON would
		// leave part of the token out.
		return err
	}
	out, err := inspectJSON(t, *compact)
	if err != nil {
		return err
	}
	_, err = env.stdout.Write(out)
	return err
}

// inspectJSON is the token in the codec's JSON schema with the issued and
// expires times added, ending in a newline.
func inspectJSON(t *accesstoken.Token, compact bool) ([]byte, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode token as json: %w", err)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return nil, fmt.Errorf("encode token as json: not an object")
	}
	issued := time.Unix(int64(t.IssueTs), 0).UTC()
	expires := issued.Add(time.Duration(t.Expire) * time.Second)
	// Splice the human fields in after the codec's own, keeping its order.
	var b bytes.Buffer
	b.Write(raw[:len(raw)-1])
	if len(bytes.TrimSpace(raw[1:len(raw)-1])) > 0 {
		b.WriteByte(',')
	}
	fmt.Fprintf(&b, "%q:%q,%q:%q}", fieldIssued, issued.Format(time.RFC3339),
		fieldExpires, expires.Format(time.RFC3339))
	if compact {
		b.WriteByte('\n')
		return b.Bytes(), nil
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, b.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("encode token as json: %w", err)
	}
	ind.WriteByte('\n')
	return ind.Bytes(), nil
}
