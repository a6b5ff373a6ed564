package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

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
	log.Info("starting", "config", configPath, "issuer", svc.Name())
	err = serve(ctx, svc, notify, hup, log)
	notify.Stopping()
	if err != nil {
		log.Error("stopped on error", "err", err)
		return 1
	}
	return 0
}

// serve runs the service, the reloads (SIGHUP on hup) and the systemd
// notifications as one group until ctx ends (nil then) or one of them
// fails, which stops the others. Every goroutine it starts has returned
// when it returns.
func serve(ctx context.Context, svc *issuer.Service, notify *sdnotify.Notifier, hup <-chan os.Signal, log *slog.Logger) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := svc.Run(gctx); err != nil {
			return err
		}
		if ctx.Err() == nil {
			return errors.New("the service stopped by itself")
		}
		return nil
	})
	g.Go(func() error {
		for {
			select {
			case <-hup:
				notify.Reloading()
				_ = svc.Reload(gctx) // logs why on failure
				_ = notify.Ready()
			case <-gctx.Done():
				return nil
			}
		}
	})
	g.Go(func() error {
		tellSystemd(gctx, svc, notify, log)
		return nil
	})
	return g.Wait()
}

// watchdogEvery is how often tellSystemd probes and pings: as often as
// systemd asks, and at least every 10 s for the status line.
func watchdogEvery(notify *sdnotify.Notifier) time.Duration {
	every := notify.PingEvery()
	if every <= 0 || every > 10*time.Second {
		every = 10 * time.Second
	}
	return every
}

// tellSystemd sends READY=1 once the service first serves (Type=notify),
// then, every tick, probes the request path (a no-op through the worker
// queue) and pings the watchdog only when the probe is answered within
// half a tick: wedged workers stop the pings, and systemd restarts the
// issuer. A broker that is down is not a wedge: the status line says so
// and the pings go on (the service reconnects by itself). STATUS= stays
// current.
func tellSystemd(ctx context.Context, svc *issuer.Service, notify *sdnotify.Notifier, log *slog.Logger) {
	select {
	case <-svc.Started():
	case <-ctx.Done():
		return
	}
	_ = notify.Ready() // logged by the notifier
	every := watchdogEvery(notify)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, every/2)
		err := svc.Probe(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			notify.Status("not responding: the request path did not answer the watchdog probe")
			log.Error("watchdog: the request path did not answer within the deadline; not pinging systemd",
				"deadline", every/2, "err", err)
		case svc.Ready():
			notify.Status("serving: broker connected, policy loaded")
			notify.Ping()
		default:
			notify.Status("not ready: waiting for the broker")
			notify.Ping()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
