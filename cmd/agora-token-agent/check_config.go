package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"agoratokens/agent"
	"agoratokens/redact"
)

// runCheckConfig validates a config file (and the secret files it names)
// the way run loads it, and prints a summary without any secret.
func runCheckConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, path, code := loadConfigArg("check-config", args, stderr)
	if cfg == nil {
		return code
	}
	eng, err := agent.New(*cfg, agent.Deps{})
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-agent: config %s: %v\n", path, err)
		return 1
	}
	var source string
	if cfg.Broker != nil {
		urls := cfg.Broker.URLs
		if len(urls) == 0 {
			urls = []string{cfg.Broker.URL}
		}
		shown := make([]string, len(urls))
		for i, u := range urls {
			shown[i] = redact.URL(u)
		}
		source = "mqtt " + strings.Join(shown, ", ")
	} else {
		source = "http " + cfg.HTTP.Kind + " " + redact.URL(cfg.HTTP.URL)
	}
	tokens := "all the issuer grants"
	if len(cfg.Tokens) > 0 {
		tokens = strings.Join(cfg.Tokens, ", ")
	}
	w := cfg.RenewWindow
	if w == (agent.RenewWindow{}) {
		w = agent.RenewWindow{Start: agent.DefaultRenewWindowStart, End: agent.DefaultRenewWindowEnd}
	}
	fmt.Fprintf(stdout, "%s: OK\n  device:   %s\n  source:   %s\n  tokens:   %s\n  renew:    at a random %.0f%%–%.0f%% of each token's life, at the latest %v before expiry\n  state:    %s\n  socket:   %s\n",
		path, eng.DeviceID(), source, tokens, w.Start*100, w.End*100, cfg.RenewBefore, cfg.StateDir, cfg.Socket.Path)
	return 0
}

// loadConfigArg loads the config named by --config (default
// defaultConfig), the only argument run and check-config take. On
// failure cfg is nil, the reason has been printed and code is the exit
// code: 2 for a usage error, 1 for a config that does not load.
func loadConfigArg(name string, args []string, stderr io.Writer) (cfg *agent.Config, path string, code int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	p := fs.String("config", defaultConfig, "config file")
	if err := fs.Parse(args); err != nil {
		return nil, "", 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agora-token-agent %s: unexpected argument %q\n", name, fs.Arg(0))
		return nil, "", 2
	}
	cfg, err := agent.LoadConfig(*p)
	if err != nil {
		fmt.Fprintln(stderr, "agora-token-agent:", err)
		return nil, "", 1
	}
	return cfg, *p, 0
}
