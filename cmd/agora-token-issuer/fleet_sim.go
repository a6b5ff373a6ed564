package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/brokertls"
	"agoratokens/issuer/fleetsim"
)

const fleetSimUsage = `Usage:
  agora-token-issuer fleet-sim --seed-file FILE --devices N [--register CREDFILE --format issuer|mosquitto|nats]
                               [--broker URL] [--rate R] [options]

Simulates N devices (ids PREFIX00000…), each with its own MQTT connection
and credentials, asking the issuer for tokens at once (default) or at R
requests a second, and checks every reply. The devices' secrets derive
from the seed file (created with a random seed if missing). It prints
the connect phase, the serve phase (first request to last reply) and the
total (first connection attempt to last reply); replies are checked once
the last one arrived, so that checking does not slow the storm measured.
A device whose login or subscription fails counts as failed, unless
--retries lets it try again as an agent would (a NATS cluster refuses
some in a storm when its JetStream requests time out).

  --register CREDFILE writes the fleet's credentials first: the issuer's
  device credentials file (--format issuer), or a mosquitto password_file
  (--format mosquitto; other users' lines are kept; send mosquitto SIGHUP
  afterwards), or, with --format nats, CREDFILE is the issuer config of a
  NATS setup: the devices join its registry and nats-auth.conf (reload
  every node afterwards). Without --broker it only registers.

Exit status: 0 when every device got its tokens, 1 otherwise.

Options:
`

func runFleetSim(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fleet-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, fleetSimUsage); fs.PrintDefaults() }
	brokerURL := fs.String("broker", "", "broker URL, tcp://host:port or ssl://host:port")
	n := fs.Int("devices", 100, "number of simulated devices")
	prefix := fs.String("prefix", "dev-sim-", "device id prefix")
	seedFile := fs.String("seed-file", "", "file holding the seed the device secrets derive from (required)")
	register := fs.String("register", "", "write the fleet's credentials to this file first")
	format := fs.String("format", "issuer", "credentials format for --register: issuer, mosquitto, or nats (--register names the issuer config)")
	rate := fs.Float64("rate", 0, "requests a second (0: all at once, a fleet booting)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for replies")
	tokens := fs.String("tokens", "", "comma-separated token names to ask for (default: all granted)")
	root := fs.String("topic-root", "", "topic root (default agora/v1)")
	appID := fs.String("app-id", "", "check every token's app id")
	certFile := fs.String("cert-file", "", "verify every token with the App Certificate in this file")
	caFile := fs.String("ca-file", "", "CA for an ssl:// broker")
	parallel := fs.Int("parallel", 64, "connections set up at once (keep under the broker's listen backlog, 100 for mosquitto)")
	onConnect := fs.Bool("on-connect", false, "each device asks as soon as it is connected, as an agent does (default: all at once, once the fleet is connected)")
	retries := fs.Int("retries", 0, "times a device whose login or subscription failed tries again, with the agent's backoff (1s doubling, ±20%)")
	verbose := fs.Bool("v", false, "log progress and failures")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "agora-token-issuer fleet-sim: "+format+"\n", a...)
		return 1
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "agora-token-issuer fleet-sim: unexpected argument %q\n", fs.Arg(0))
		return 2
	case *seedFile == "":
		fmt.Fprintln(stderr, "agora-token-issuer fleet-sim: --seed-file is required")
		return 2
	case *brokerURL == "" && *register == "":
		fmt.Fprintln(stderr, "agora-token-issuer fleet-sim: give --broker, --register or both")
		return 2
	case *n < 1:
		fmt.Fprintf(stderr, "agora-token-issuer fleet-sim: --devices %d, want at least 1\n", *n)
		return 2
	case *onConnect && *rate > 0:
		fmt.Fprintln(stderr, "agora-token-issuer fleet-sim: --on-connect and --rate do not go together (the logins pace a fleet asking on connect)")
		return 2
	case *retries < 0:
		fmt.Fprintf(stderr, "agora-token-issuer fleet-sim: --retries %d, want 0 or more\n", *retries)
		return 2
	}
	seed, err := fleetsim.LoadOrCreateSeed(*seedFile)
	if err != nil {
		return fail("%v", err)
	}
	if *register != "" {
		names := make([]string, *n)
		for i := range names {
			names[i] = fleetsim.DeviceName(*prefix, i)
		}
		start := time.Now()
		reg := func() error { return fleetsim.Register(*register, fleetsim.Format(*format), seed, names) }
		if *format == "nats" { // --register names the issuer config (broker.nats)
			reg = func() error { return registerNATSFleet(*register, seed, names, stderr) }
		}
		if err := reg(); err != nil {
			return fail("register: %v", err)
		}
		fmt.Fprintf(stdout, "registered %d devices in %s (%s format) in %v\n", *n, *register, *format, time.Since(start).Round(time.Millisecond))
		if *brokerURL == "" {
			return 0
		}
	}

	cfg := fleetsim.Config{
		BrokerURL: *brokerURL, Devices: *n, Prefix: *prefix, Seed: seed, TopicRoot: *root,
		Rate: *rate, Timeout: *timeout, ConnectParallel: *parallel, Retries: *retries, RequestOnConnect: *onConnect, AppID: *appID,
	}
	if *tokens != "" {
		cfg.Tokens = strings.Split(*tokens, ",")
	}
	if *certFile != "" {
		c, err := readCertificate(*certFile)
		if err != nil {
			return fail("%v", err)
		}
		cfg.Certificates = []string{c}
	}
	if *caFile != "" {
		t, err := brokertls.Client("", brokertls.Files{CAFile: *caFile})
		if err != nil {
			return fail("%v", err)
		}
		cfg.TLS = t
	}
	level := slog.LevelError
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := fleetsim.RaiseFileLimit(uint64(*n) + 64); err != nil {
		return fail("%v", err)
	}
	sim, err := fleetsim.New(cfg)
	if err != nil {
		return fail("%v", err)
	}
	res, err := sim.Run(ctx)
	if err != nil {
		return fail("%v", err)
	}
	res.Print(stdout)
	if !res.OK() {
		return 1
	}
	return 0
}

// readCertificate reads an App Certificate file (32 hex characters).
func readCertificate(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("certificate file: %w", err)
	}
	c := strings.TrimSpace(string(b))
	if err := accesstoken.ValidateHex32("certificate", c); err != nil {
		return "", fmt.Errorf("certificate file %s: %w", path, err)
	}
	return c, nil
}
