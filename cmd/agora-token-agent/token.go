package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"agoratokens/agent/client"
)

// requestTimeout bounds one request to the agent from the shell.
const requestTimeout = 10 * time.Second

// runTokenCmd prints the named token if the agent holds a valid one:
// TOKEN=$(agora-token-agent token video) in a shell script.
func runTokenCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: agora-token-agent token NAME [--config FILE | --socket PATH]")
		fmt.Fprintln(stderr, "Prints the current valid token NAME; exits 1 if there is none.")
		fs.PrintDefaults()
	}
	var sf socketFlags
	sf.register(fs)
	pos, ok, code := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return 2
	}
	path, err := sf.path()
	if err != nil {
		fmt.Fprintln(stderr, "agora-token-agent token:", err)
		return 2
	}
	c, err := client.Dial(path)
	if err != nil {
		fmt.Fprintln(stderr, "agora-token-agent token:", err)
		return 1
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
