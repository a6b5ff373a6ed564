package main

import (
	"context"
	"errors"
	"flag"
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
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkConfigUsage); fs.PrintDefaults() }
	configPath := fs.String("config", "", "issuer config file (YAML)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *configPath == "" || fs.NArg() != 0 {
		fmt.Fprint(stderr, "agora-token-issuer check-config: --config FILE is required and nothing else\n\n"+checkConfigUsage)
		return 2
	}
	if err := issuer.Check(*configPath, stdout); err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer check-config: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "config OK")
	return 0
}
