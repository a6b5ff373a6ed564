// Package cli is the command dispatch both binaries share: the first
// argument names a command, --version and --help are answered here, and
// an unknown command is a usage error.
package cli

import (
	"context"
	"fmt"
	"io"
)

// Command runs one command with the arguments after its name and
// returns the exit code.
type Command func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// Run dispatches args to the command args[0] names. Exit codes: the
// command's, 0 for --version and --help, 2 for a missing or unknown
// command (usage on stderr).
func Run(ctx context.Context, prog, version, usage string, cmds map[string]Command, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "--version", "version":
		fmt.Fprintln(stdout, prog, version)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	if cmd, ok := cmds[name]; ok {
		return cmd(ctx, rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n%s", prog, name, usage)
	return 2
}
