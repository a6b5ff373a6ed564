package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// parseConfigOnly parses the arguments of a command that takes
// --config FILE and nothing else (serve, check-config). ok is false
// when the command should exit with code: 0 after -h, 2 after a usage
// error, which has been printed with usage.
func parseConfigOnly(name, usage string, args []string, stderr io.Writer) (path string, code int, ok bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	configPath := fs.String("config", "", "issuer config file (YAML)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", 0, false
		}
		return "", 2, false
	}
	if *configPath == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "agora-token-issuer %s: --config FILE is required and nothing else\n\n%s", name, usage)
		return "", 2, false
	}
	return *configPath, 0, true
}
