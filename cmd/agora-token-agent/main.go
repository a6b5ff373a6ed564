// Command agora-token-agent keeps a device's Agora tokens fresh: it
// requests them from the issuer, renews them before they expire, keeps the
// last good ones across reboots and hands them to the local media process
// over a Unix socket.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"agoratokens/buildinfo"
	"agoratokens/internal/cli"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `agora-token-agent: keep this device's Agora tokens fresh

Usage:
  agora-token-agent run --config FILE            run the agent
  agora-token-agent check-config --config FILE   validate the config
  agora-token-agent token NAME [--config FILE | --socket PATH]
                                                 print the current valid token
  agora-token-agent status [--json] [--config FILE | --socket PATH]
  agora-token-agent watch [--config FILE | --socket PATH]
  agora-token-agent --version
`

// run is the whole program; exit codes: 0 ok, 1 failure, 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Run(ctx, "agora-token-agent", buildinfo.Version, usage, map[string]cli.Command{
		"run": runAgent, "check-config": runCheckConfig, "token": runTokenCmd,
		"status": runStatus, "watch": runWatch,
	}, args, stdout, stderr)
}
