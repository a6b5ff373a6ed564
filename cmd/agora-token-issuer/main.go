// Command agora-token-issuer holds an Agora project's App Certificate(s),
// decides from a policy which device may hold which token, and signs and
// publishes AccessToken2 tokens over MQTT and HTTP.
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
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `agora-token-issuer: sign and publish Agora AccessToken2 tokens for a device fleet

Usage:
  agora-token-issuer serve --config FILE          run the token service
  agora-token-issuer check-config --config FILE   validate config and policy
  agora-token-issuer init DIR [--listen ADDR] [--ttl DURATION] [--http ADDR]
                                                  write a single-machine setup
  agora-token-issuer device add|rotate|remove|list ... --config FILE
                                                  register devices of the embedded broker
  agora-token-issuer apikey add|list|revoke ...   keys of the HTTP token API
  agora-token-issuer token inspect|build|verify|rtc|rtm|chat|education|fpa ...
                                                  work with tokens
  agora-token-issuer fleet status --config FILE [filters] [--json]
                                                  the devices, their tokens' kids and expiries
  agora-token-issuer certificate add|list|remove ...
                                                  manage the App Certificates
  agora-token-issuer rotate --to ID --config FILE [--rate N] [--wait]
                                                  move the fleet to another certificate
  agora-token-issuer fleet-sim ...                simulate a fleet (capacity planning)
  agora-token-issuer --version

Run a command with --help for its flags.
`

// run is the whole program; exit codes: 0 ok, 1 failure, 2 usage error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	serve := func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		tuneGC()
		return runServe(ctx, args, stdout, stderr)
	}
	token := func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return runToken(ctx, args, stdin, stdout, stderr)
	}
	return cli.Run(ctx, "agora-token-issuer", buildinfo.Version, usage, map[string]cli.Command{
		"serve": serve, "check-config": runCheckConfig, "init": runInit, "device": runDevice,
		"apikey": runAPIKey, "token": token, "certificate": runCertificate, "rotate": runRotate,
		"fleet": runFleet, "fleet-sim": runFleetSim,
	}, args, stdout, stderr)
}
