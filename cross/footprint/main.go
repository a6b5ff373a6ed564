// Command footprint runs the agent's parts (engine, socket server, status
// LED, systemd notifier) wired together, for scripts/bench-footprint.sh
// to measure while `agora-token-agent run` is not there yet; it also
// links everything the agent will, so its size is the agent's to come.
// It is a benchmark probe, not a product: it ships in no package.
//
//	footprint --config agent.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"agoratokens/agent"
	"agoratokens/agent/socket"
	"agoratokens/device"
	"agoratokens/sdnotify"
)

func main() {
	configPath := flag.String("config", "", "agent config file")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*configPath, log); err != nil {
		fmt.Fprintln(os.Stderr, "footprint:", err)
		os.Exit(1)
	}
}

func run(configPath string, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := agent.LoadConfig(configPath)
	if err != nil {
		return err
	}
	board, err := device.Detect("/")
	if err != nil {
		return err
	}
	log.Info("board", "board", board.String())
	led, err := device.NewLED(device.LEDConfig{GPIO: cfg.LED.GPIO, Sysfs: cfg.LED.Sysfs, ActiveLow: cfg.LED.ActiveLow}, nil, log)
	if err != nil {
		return err
	}
	notify := sdnotify.New(log)
	eng, err := agent.New(*cfg, agent.Deps{
		Logger:   log,
		DeviceID: func(prefix string) (string, error) { return device.DeviceID(prefix, board) },
		OnHealth: func(h agent.Health) { led.Set(device.StateFor(h.Expired, h.Failing, h.Renewing)) },
	})
	if err != nil {
		return err
	}
	srv, err := socket.New(socket.Config{Path: cfg.Socket.Path, Mode: cfg.Socket.Mode, Group: cfg.Socket.Group,
		AllowUIDs: cfg.Socket.AllowUIDs, AllowGIDs: cfg.Socket.AllowGIDs, MaxClients: cfg.Socket.MaxClients,
		Device: eng.DeviceID(), Logger: log}, eng)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return eng.Run(ctx) })
	g.Go(func() error { return srv.Run(ctx) })
	g.Go(func() error { return led.Run(ctx) })
	g.Go(func() error {
		select {
		case <-srv.Ready():
		case <-ctx.Done():
			return nil
		}
		if err := notify.Ready(); err != nil {
			return err
		}
		every := notify.PingEvery()
		if every == 0 {
			every = 10 * time.Second
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				notify.Stopping()
				return nil
			case <-t.C:
				notify.Ping()
				notify.Status(statusLine(eng.Status(time.Now()), time.Now()))
			}
		}
	})
	return g.Wait()
}

func statusLine(st agent.Status, now time.Time) string {
	tokens := make([]sdnotify.Token, 0, len(st.Tokens))
	for _, t := range st.Tokens {
		tokens = append(tokens, sdnotify.Token{Name: t.Name, State: string(t.State), ExpiresIn: t.Token.ExpiresIn(now)})
	}
	return sdnotify.StatusLine(st.Broker, tokens)
}
