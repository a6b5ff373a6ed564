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

	"agoratokens/agent"
	"agoratokens/agent/socket"
	"agoratokens/buildinfo"
	"agoratokens/device"
	"agoratokens/sdnotify"
)

// defaultConfig is where the packaged agent finds its config.
const defaultConfig = "/etc/agora-token-agent/agent.yaml"

// runAgent runs the agent until ctx ends (SIGTERM/SIGINT): the renewal
// engine, the Unix socket, the status LED and the systemd notifications.
// A clean shutdown (offline status published, socket removed) exits 0.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, path, code := loadConfigArg("run", args, stderr)
	if cfg == nil {
		return code
	}
	level := new(slog.LevelVar)
	level.Set(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	notify := sdnotify.New(log)
	defer notify.Stopping()

	// SIGHUP (systemctl reload) reads the config again. A config that does
	// not load is refused and the running agent goes on; a good one
	// replaces the running parts: tokens stay (they are persisted), socket
	// clients reconnect (the clients do so by themselves).
	for {
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func(cfg *agent.Config) { done <- serve(runCtx, cfg, log, notify) }(cfg)
		reload := false
		for !reload {
			select {
			case err := <-done:
				stop()
				if err != nil {
					log.Error("agent stopped", "err", err)
					return 1
				}
				log.Info("agent stopped")
				return 0
			case <-hup:
				next, err := agent.LoadConfig(path)
				if err != nil {
					log.Error("reload refused; the running config stays", "err", err)
					continue
				}
				log.Info("reloading", "config", path)
				notify.Reloading()
				cfg, reload = next, true
			}
		}
		stop()
		if err := <-done; err != nil {
			log.Error("agent stopped while reloading", "err", err)
			return 1
		}
		level.Set(cfg.LogLevel)
	}
}

// serve runs the agent's parts with cfg until ctx ends (nil then) or one
// of them fails.
func serve(ctx context.Context, cfg *agent.Config, log *slog.Logger, notify *sdnotify.Notifier) error {
	led, err := device.NewLED(device.LEDConfig{GPIO: cfg.LED.GPIO, Sysfs: cfg.LED.Sysfs, ActiveLow: cfg.LED.ActiveLow}, nil, log)
	if err != nil {
		return fmt.Errorf("led: %w", err)
	}
	led.Set(device.LEDExpired) // nothing served yet
	eng, err := agent.New(*cfg, agent.Deps{
		Logger:   log,
		OnHealth: func(h agent.Health) { led.Set(ledState(h)) },
	})
	if err != nil {
		return err
	}
	srv, err := socket.New(socket.Config{
		Path: cfg.Socket.Path, Mode: cfg.Socket.Mode, Group: cfg.Socket.Group,
		AllowUIDs: cfg.Socket.AllowUIDs, AllowGIDs: cfg.Socket.AllowGIDs,
		MaxClients: cfg.Socket.MaxClients, Device: eng.DeviceID(), Logger: log,
	}, eng)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	log.Info("agent starting", "version", buildinfo.Version, "device", eng.DeviceID(), "socket", cfg.Socket.Path)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return eng.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return led.Run(gctx) })
	g.Go(func() error {
		for _, c := range []<-chan struct{}{eng.Ready(), srv.Ready()} {
			select {
			case <-c:
			case <-gctx.Done():
				return nil
			}
		}
		if err := notify.Ready(); err != nil {
			log.Warn("systemd readiness not sent", "err", err)
		}
		return watchdog(gctx, eng, notify)
	})
	err = g.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

// ledState is what the LED shows for the engine's health. A token the
// issuer refuses shows as failing renewals (double flash), not as expired:
// it needs a policy or config fix, not patience, and `status` says which
// token and why. An expired or missing token that is not refused wins.
func ledState(h agent.Health) device.LEDState {
	return device.StateFor(h.Expired, h.Failing || h.Refused, h.Renewing)
}

// watchdog pings systemd and refreshes the status line. Status takes the
// engine's lock, so a hung engine stops the pings and systemd restarts it.
func watchdog(ctx context.Context, eng *agent.Engine, notify *sdnotify.Notifier) error {
	every := notify.PingEvery()
	if every <= 0 || every > 10*time.Second {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		st := eng.Status(time.Now())
		var toks []sdnotify.Token
		for _, ts := range st.Tokens {
			var left time.Duration
			if ts.State != agent.StateMissing {
				left = ts.Token.ExpiresIn(time.Now())
			}
			toks = append(toks, sdnotify.Token{Name: ts.Name, State: string(ts.State), ExpiresIn: left})
		}
		notify.Status(sdnotify.StatusLine(st.Broker, toks))
		notify.Ping()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
