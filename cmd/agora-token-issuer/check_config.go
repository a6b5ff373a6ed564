package main

import (
	"context"
	"fmt"
	"io"

	"agoratokens/issuer"
)

const checkConfigUsage = `Usage: agora-token-issuer check-config --config FILE

Loads the config and everything it names (certificates and their file
modes, broker password, policy, API keys) as serve would, and prints a
summary without secrets. Exit code 0: valid; 1: invalid.
`

func runCheckConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	configPath, code, ok := parseConfigOnly("check-config", checkConfigUsage, args, stderr)
	if !ok {
		return code
	}
	if err := issuer.Check(configPath, stdout); err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer check-config: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "config OK")
	return 0
}
