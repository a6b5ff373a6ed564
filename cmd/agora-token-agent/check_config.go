package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"agoratokens/agent"
)

// runCheckConfig validates a config file (and the secret files it names)
// the way run loads it, and prints a summary without any secret.
func runCheckConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfig, "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agora-token-agent check-config: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := agent.LoadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, "agora-token-agent:", err)
		return 1
	}
	eng, err := agent.New(*cfg, agent.Deps{})
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-agent: config %s: %v\n", *path, err)
		return 1
	}
	var source string
	if cfg.Broker != nil {
		source = "mqtt " + cfg.Broker.URL
	} else {
		source = "http " + cfg.HTTP.Kind + " " + cfg.HTTP.URL
	}
	tokens := "all the issuer grants"
	if len(cfg.Tokens) > 0 {
		tokens = strings.Join(cfg.Tokens, ", ")
	}
	fmt.Fprintf(stdout, "%s: OK\n  device:   %s\n  source:   %s\n  tokens:   %s\n  renew:    %v before expiry\n  state:    %s\n  socket:   %s\n",
		*path, eng.DeviceID(), source, tokens, cfg.RenewBefore, cfg.StateDir, cfg.Socket.Path)
	return 0
}
