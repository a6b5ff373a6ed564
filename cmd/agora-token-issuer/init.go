package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/issuer/devices"
)

const initUsage = `Usage: agora-token-issuer init DIR [--listen ADDR | --nats URL[,URL…]] [--ttl DURATION] [--http ADDR]

Writes a complete single-machine setup into DIR (created if needed):
  issuer.yaml   the issuer with its embedded MQTT broker on ADDR
  policy.yaml   every registered device gets an RTC publisher token
                "video" for channel {device} (its own id) and an RTM
                token "signal" for user {device}, each living DURATION
  app.cert      the App Certificate (mode 0600)
  devices.yaml  the device credentials (add devices with "device add")
  apikeys.yaml  with --http: the HTTP token API's keys on ADDR (add keys
                with "apikey add")
The App ID and Certificate come from $AGORA_APP_ID and
$AGORA_APP_CERTIFICATE; without them a random demo pair is generated,
whose tokens Agora will refuse. Existing files are never overwritten.
With --nats the issuer speaks NATS to the cluster of those nodes instead
(broker.nats), and init also writes nats-issuer.password and
nats-auth.conf, the nats-server users that "device add" keeps up to date
(include it in every node's config: configs/nats/node.conf).
Then: agora-token-issuer serve --config DIR/issuer.yaml
`

// Names of the files init writes.
const (
	initConfig  = "issuer.yaml"
	initPolicy  = "policy.yaml"
	initCert    = "app.cert"
	initDevices = "devices.yaml"
	initAPIKeys = "apikeys.yaml"
)

func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, initUsage); fs.PrintDefaults() }
	listen := fs.String("listen", "127.0.0.1:1883", "`ADDR` of the embedded MQTT broker")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime in the policy (1s to 24h, whole seconds)")
	httpAddr := fs.String("http", "", "`ADDR` of the HTTP token API, health and metrics (default: off)")
	natsList := fs.String("nats", "", "`URL[,URL…]` of a NATS cluster's nodes: a setup for it instead of the embedded broker")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprint(stderr, "agora-token-issuer init: want exactly one DIR\n\n"+initUsage)
		return 2
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer init: --listen %q is not host:port: %v\n", *listen, err)
		return 2
	}
	if *httpAddr != "" {
		if _, _, err := net.SplitHostPort(*httpAddr); err != nil {
			fmt.Fprintf(stderr, "agora-token-issuer init: --http %q is not host:port: %v\n", *httpAddr, err)
			return 2
		}
	}
	if *ttl < time.Second || *ttl > accesstoken.MaxExpire*time.Second || *ttl%time.Second != 0 {
		fmt.Fprintf(stderr, "agora-token-issuer init: --ttl %v is not whole seconds between 1s and 24h\n", *ttl)
		return 2
	}
	appID, cert, demo, err := initCredentials(os.Getenv("AGORA_APP_ID"), os.Getenv("AGORA_APP_CERTIFICATE"))
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer init: %v\n", err)
		return 2
	}
	dir := pos[0]
	write := func() error { return writeInit(dir, *listen, *ttl, appID, cert, *httpAddr) }
	if *natsList != "" {
		servers, err := parseNATSURLs(*natsList)
		if err != nil {
			fmt.Fprintf(stderr, "agora-token-issuer init: %v\n", err)
			return 2
		}
		write = func() error { return writeInitNATS(dir, servers, *ttl, appID, cert) }
	}
	if err := write(); err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer init: %v\n", err)
		return 1
	}
	if demo {
		fmt.Fprint(stderr, `
*** DEMO CREDENTIALS ***
AGORA_APP_ID and AGORA_APP_CERTIFICATE are not set, so init generated a
random App ID and Certificate. Everything runs locally, but Agora will
refuse these tokens. For real ones, set both variables and run init again
in an empty directory (or edit app_id and app.cert).

`)
	}
	cfg := filepath.Join(dir, initConfig)
	fmt.Fprintf(stdout, `Wrote %s, %s, %s and %s in %s.
Next:
  agora-token-issuer serve --config %s
  agora-token-issuer device add dev-1 --config %s --out dev-1 --local
`, initConfig, initPolicy, initCert, initDevices, dir, cfg, cfg)
	if *httpAddr != "" {
		fmt.Fprintf(stdout, "  agora-token-issuer apikey add web --config %s   (the HTTP token API on %s)\n", cfg, *httpAddr)
	}
	return 0
}

// initCredentials picks the App ID and Certificate: both from the
// environment, or (neither set) a random demo pair.
func initCredentials(appID, cert string) (string, string, bool, error) {
	switch {
	case appID != "" && cert != "":
		if err := accesstoken.ValidateHex32("AGORA_APP_ID", appID); err != nil {
			return "", "", false, err
		}
		if err := accesstoken.ValidateHex32("AGORA_APP_CERTIFICATE", cert); err != nil {
			return "", "", false, err
		}
		return appID, cert, false, nil
	case appID != "" || cert != "":
		return "", "", false, errors.New("set both AGORA_APP_ID and AGORA_APP_CERTIFICATE, or neither for a demo pair")
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", false, err
	}
	return hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:]), true, nil
}

// writeInit writes the setup's files, refusing to overwrite any.
func writeInit(dir, listen string, ttl time.Duration, appID, cert, httpAddr string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	for _, name := range []string{initConfig, initPolicy, initCert, initDevices, initAPIKeys} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%s already exists; init writes into a fresh directory only", filepath.Join(dir, name))
		}
	}
	config := fmt.Sprintf(`# agora-token-issuer: a single-machine setup written by "agora-token-issuer init".
# Check it with: agora-token-issuer check-config --config %[1]s
app_id: %[2]s
certificates:
  - {id: primary, file: %[3]s}
active_certificate: primary
broker:
  embedded:
    listen: %[4]q
    credentials_file: %[5]s
topic_root: agora/v1
policy_file: %[6]s
limits:
  default_ttl: %[7]s
  max_ttl: 24h
  rate: {per_minute: 12, burst: 6}
%[8]slog_level: info
`, initConfig, appID, initCert, listen, initDevices, initPolicy, shortDuration(ttl), initHTTP(httpAddr))
	policy := initPolicyText(ttl)
	if err := writeNew(filepath.Join(dir, initCert), []byte(cert+"\n"), 0o600); err != nil {
		return err
	}
	if err := devices.New().Save(filepath.Join(dir, initDevices)); err != nil {
		return fmt.Errorf("write %s: %w", initDevices, err)
	}
	if httpAddr != "" {
		if err := writeNew(filepath.Join(dir, initAPIKeys), []byte("keys: []\n"), 0o600); err != nil {
			return err
		}
	}
	if err := writeNew(filepath.Join(dir, initPolicy), []byte(policy), 0o644); err != nil {
		return err
	}
	return writeNew(filepath.Join(dir, initConfig), []byte(config), 0o644)
}

// initHTTP is the config's HTTP section: commented out without --http.
func initHTTP(addr string) string {
	if addr == "" {
		return `# Health, readiness and Prometheus metrics (and the HTTP token API with
# http.api_keys_file):
# listen: 127.0.0.1:9464
`
	}
	return fmt.Sprintf(`# Health, readiness, Prometheus metrics and the HTTP token API (see
# docs/http-api.md); add keys with: agora-token-issuer apikey add NAME
listen: %q
http:
  api_keys_file: %s
  # cors_allow_origin: ["https://app.example.com"]
`, addr, initAPIKeys)
}

// writeNew creates path with mode, failing if it exists.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil { // umask may have narrowed it
		f.Close()
		return err
	}
	return f.Close()
}

// shortDuration writes d as people do: 1h, 90m, 40s.
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}
