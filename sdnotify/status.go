package sdnotify

import (
	"fmt"
	"strings"
	"time"
)

// Token is one token in a status line: its name, its state as the socket
// protocol names it (valid, renewing, expired, missing) and how long it
// stays valid.
type Token struct {
	Name      string
	State     string
	ExpiresIn time.Duration
}

// StatusLine is the STATUS= text for the agent: the broker's state and
// each token's remaining validity, e.g.
// "broker connected; video valid 58m12s, signal renewing 25s".
// It never holds a token itself.
func StatusLine(broker string, tokens []Token) string {
	var b strings.Builder
	fmt.Fprintf(&b, "broker %s", broker)
	if len(tokens) == 0 {
		b.WriteString("; no tokens")
		return b.String()
	}
	for i, t := range tokens {
		if i == 0 {
			b.WriteString("; ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(t.Name + " " + t.State)
		if t.State != "expired" && t.State != "missing" {
			b.WriteString(" " + t.ExpiresIn.Truncate(time.Second).String())
		}
	}
	return b.String()
}
