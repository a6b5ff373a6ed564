package main

import (
	"context"
	"fmt"
	"io"

	"agoratokens/issuer"
)

const checkConfigUsage = `Usage: agora-token-issuer check-config --config FILE

Loads the config and everything it names as serve would (certificates,
broker password, TLS certificate and key, device credentials, policy, API
keys, and the modes of the files that must stay private), warns about
what serve accepts but should not go unnoticed, and prints a summary
without secrets. Exit code 0: valid; 1: invalid.
`

func runCheckConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	configPath, code, ok := parseConfigOnly("check-config", checkConfigUsage, args, stderr)
	if !ok {
		return code
	}
	loaded, err := issuer.Load(configPath)
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer check-config: %v\n", err)
		return 1
	}
	for _, w := range loaded.Warnings {
		fmt.Fprintf(stderr, "agora-token-issuer check-config: warning: config %s: %v\n", configPath, w)
	}
	issuer.Check(configPath, loaded, stdout)
	fmt.Fprintln(stdout, "config OK")
	return 0
}
