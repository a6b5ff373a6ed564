package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// requestTimeout bounds one request to the agent from the shell.
const requestTimeout = 10 * time.Second

// runTokenCmd prints the named token if the agent holds a valid one:
// TOKEN=$(agora-token-agent token video) in a shell script.
func runTokenCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newAgentCommand("token", stderr,
		"Usage: agora-token-agent token NAME [--config FILE | --socket PATH]",
		"Prints the current valid token NAME; exits 1 if there is none.")
	c, pos, code := cmd.dial(args, func(n int) bool { return n == 1 })
	if c == nil {
		return code
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	tok, err := c.Get(ctx, pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-agent token %s: %v\n", pos[0], err)
		return 1
	}
	fmt.Fprintln(stdout, tok.Token)
	return 0
}
