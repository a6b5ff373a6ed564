package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"agoratokens/agent/socketproto"
)

// runStatus prints the agent's state as a table, or the protocol's
// status line with --json. It never prints a token.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newAgentCommand("status", stderr,
		"Usage: agora-token-agent status [--json] [--config FILE | --socket PATH]")
	asJSON := cmd.fs.Bool("json", false, "print the agent's status reply as JSON")
	c, _, code := cmd.dial(args, func(n int) bool { return n == 0 })
	if c == nil {
		return code
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	m, err := c.Do(ctx, socketproto.Request{Op: socketproto.OpStatus})
	if err != nil {
		return cmd.fail(err)
	}
	if *asJSON {
		m.ID = ""
		b, _ := json.Marshal(m)
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	printStatus(stdout, m)
	return 0
}

// printStatus renders a status reply for people.
func printStatus(w io.Writer, m socketproto.Message) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "device:\t%s\n", m.Device)
	fmt.Fprintf(tw, "broker:\t%s\n", m.Broker)
	if m.Storage != "" {
		fmt.Fprintf(tw, "state:\t%s\n", m.Storage)
	} else {
		fmt.Fprintf(tw, "state:\tpersisted\n")
	}
	for _, r := range m.Refused {
		name := r.Name
		if name == "" {
			name = "(all granted)"
		}
		fmt.Fprintf(tw, "refused:\t%s: %s: %s\n", name, r.Code, r.Message)
	}
	tw.Flush()
	if len(m.Tokens) == 0 {
		fmt.Fprintln(w, "no tokens")
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tEXPIRES IN\tEXPIRES AT (issuer clock)\tKID")
	for _, t := range m.Tokens {
		in, at, kid := "-", "-", t.KID
		if t.ExpiresIn != nil {
			in = (time.Duration(*t.ExpiresIn) * time.Second).String()
		}
		if t.ExpiresAt != 0 {
			at = time.Unix(t.ExpiresAt, 0).UTC().Format(time.RFC3339)
		}
		if kid == "" {
			kid = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.State, in, at, kid)
	}
	tw.Flush()
}
