package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
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

// subcommand picks the subcommand of a command with several (device,
// apikey, certificate): args[0] must be one of subs. ok is false when the
// command should exit with code: 0 after help (usage on stdout), 2 when
// the subcommand is missing or unknown (usage on stderr).
func subcommand(name, usage string, subs []string, args []string, stdout, stderr io.Writer) (sub string, rest []string, code int, ok bool) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return "", nil, 2, false
	}
	sub, rest = args[0], args[1:]
	switch {
	case sub == "-h" || sub == "--help" || sub == "help":
		fmt.Fprint(stdout, usage)
		return "", nil, 0, false
	case !slices.Contains(subs, sub):
		fmt.Fprintf(stderr, "agora-token-issuer %s: unknown command %q\n\n%s", name, sub, usage)
		return "", nil, 2, false
	}
	return sub, rest, 0, true
}

// subcommandFlags is a flag set for "name sub" printing usage on -h.
func subcommandFlags(name, sub, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name+" "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	return fs
}

// parseNames parses flags anywhere among the arguments of "name sub",
// requires --config (*config) and want positional names (of what, for
// the message). ok is false when the command should exit with code: 0
// after -h, 2 after a usage error (printed).
func parseNames(fs *flag.FlagSet, rest []string, config *string, want int, what, usage string, stderr io.Writer) (names []string, code int, ok bool) {
	names, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		return nil, 0, false
	}
	if err != nil {
		return nil, 2, false
	}
	if *config == "" {
		fmt.Fprintf(stderr, "agora-token-issuer %s: --config is required\n", fs.Name())
		return nil, 2, false
	}
	if len(names) != want {
		fmt.Fprintf(stderr, "agora-token-issuer %s: want %d %s(s), got %d\n\n%s", fs.Name(), want, what, len(names), usage)
		return nil, 2, false
	}
	return names, 0, true
}
