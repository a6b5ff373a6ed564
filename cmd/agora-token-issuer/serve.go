package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"agoratokens/issuer"
	"agoratokens/sdnotify"
)

const serveUsage = `Usage: agora-token-issuer serve --config FILE

Runs the token service until SIGTERM or SIGINT (then it stops taking
requests, finishes those in flight, publishes its offline status and
exits 0). SIGHUP reloads the config, policy, certificates and device
credentials; an invalid reload keeps the running ones and logs why.
`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	configPath, code, ok := parseConfigOnly("serve", serveUsage, args, stderr)
	if !ok {
		return code
	}
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	svc, err := issuer.New(issuer.Options{ConfigFile: configPath, Logger: log, LogLevel: level})
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer serve: %v\n", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	notify := sdnotify.New(log)
	go func() {
		for {
			select {
			case <-hup:
				notify.Reloading()
				_ = svc.Reload(ctx) // logs why on failure
				_ = notify.Ready()
			case <-ctx.Done():
				return
			}
		}
	}()
	go tellSystemd(ctx, svc, notify)
	log.Info("starting", "config", configPath, "issuer", svc.Name())
	err = svc.Run(ctx)
	notify.Stopping()
	if err != nil {
		log.Error("stopped on error", "err", err)
		return 1
	}
	return 0
}

// tellSystemd sends READY=1 once the service first serves (Type=notify),
// then pings the watchdog and keeps STATUS= current. Ready takes the
// service's lock, so a wedged service stops the pings and systemd
// restarts it.
func tellSystemd(ctx context.Context, svc *issuer.Service, notify *sdnotify.Notifier) {
	select {
	case <-svc.Started():
	case <-ctx.Done():
		return
	}
	_ = notify.Ready() // logged by the notifier
	every := notify.PingEvery()
	if every <= 0 || every > 10*time.Second {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if svc.Ready() {
			notify.Status("serving: broker connected, policy loaded")
		} else {
			notify.Status("not ready: waiting for the broker")
		}
		notify.Ping()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
