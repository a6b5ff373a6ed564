// Command agora-media-sample stands in for a camera's media process: it
// watches the agent's Unix socket and, on every token it is handed, does
// what a real app built on Agora's SDK would do — join with the first
// token, then call renewToken with each fresh one.
//
// It prints one line per event: "JOIN name token …" and "RENEW name token
// …" are what a real app would pass to joinChannel and renewToken
// (agora_rtc_renew_token in the C SDK); the demo checks them.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"agoratokens/agent/client"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agora-media-sample", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", client.DefaultPath, "the agent's Unix socket")
	name := fs.String("name", "", "token name to follow (default: all)")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the agent's socket at start")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var names []string
	if *name != "" {
		names = []string{*name}
	}
	events, err := watch(ctx, *socket, names, *wait)
	if err != nil {
		fmt.Fprintf(stderr, "agora-media-sample: %v\n", err)
		return 1
	}
	current := map[string]string{}
	var lost error // why the agent connection last broke
	for ev := range events {
		switch ev.Kind {
		case client.EventToken:
			switch current[ev.Name] {
			case ev.Token.Token:
				continue // the same token again, after a reconnect
			case "":
				fmt.Fprintf(stdout, "JOIN %s %s expires_in=%s kid=%s\n", ev.Name, ev.Token.Token, ev.Token.ExpiresIn, ev.Token.KID)
			default:
				fmt.Fprintf(stdout, "RENEW %s %s expires_in=%s kid=%s\n", ev.Name, ev.Token.Token, ev.Token.ExpiresIn, ev.Token.KID)
			}
			current[ev.Name] = ev.Token.Token
		case client.EventWillExpire:
			fmt.Fprintf(stdout, "WILL_EXPIRE %s expires_in=%s\n", ev.Name, ev.Token.ExpiresIn)
		case client.EventExpired:
			fmt.Fprintf(stdout, "EXPIRED %s\n", ev.Name)
		case client.EventDisconnected:
			fmt.Fprintf(stdout, "DISCONNECTED %v\n", ev.Err)
			lost = ev.Err
		}
	}
	if ctx.Err() == nil { // the watch ended by itself: the agent refuses us
		fmt.Fprintf(stderr, "agora-media-sample: %v\n", lost)
		return 1
	}
	return 0
}

// watch starts a watch, waiting up to wait for the agent to come up (the
// media process may start before the agent's socket exists).
func watch(ctx context.Context, path string, names []string, wait time.Duration) (<-chan client.Event, error) {
	deadline := time.Now().Add(wait)
	delay := 50 * time.Millisecond
	for {
		c, err := client.Dial(path)
		if err == nil {
			var events <-chan client.Event
			if events, err = c.Watch(ctx, names...); err == nil {
				return events, nil
			}
			c.Close()
		}
		if time.Now().Add(delay).After(deadline) {
			return nil, fmt.Errorf("watch %s: %w", path, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, time.Second)
	}
}
