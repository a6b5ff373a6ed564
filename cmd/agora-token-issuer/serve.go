package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"agoratokens/issuer"
)

const serveUsage = `Usage: agora-token-issuer serve --config FILE

Runs the token service until SIGTERM or SIGINT (then it stops taking
requests, finishes those in flight, publishes its offline status and
exits 0). SIGHUP reloads the config, policy, certificates and device
credentials; an invalid reload keeps the running ones and logs why.
`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, serveUsage); fs.PrintDefaults() }
	configPath := fs.String("config", "", "issuer config file (YAML)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *configPath == "" || fs.NArg() != 0 {
		fmt.Fprint(stderr, "agora-token-issuer serve: --config FILE is required and nothing else\n\n"+serveUsage)
		return 2
	}
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	svc, err := issuer.New(issuer.Options{ConfigFile: *configPath, Logger: log, LogLevel: level})
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer serve: %v\n", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = svc.Reload(ctx) // logs why on failure
			case <-ctx.Done():
				return
			}
		}
	}()
	log.Info("starting", "config", *configPath, "issuer", svc.Name())
	if err := svc.Run(ctx); err != nil {
		log.Error("stopped on error", "err", err)
		return 1
	}
	return 0
}
