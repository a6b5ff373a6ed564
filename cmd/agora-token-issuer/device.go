package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"agoratokens/atomicfile"
	"agoratokens/issuer"
	"agoratokens/issuer/devices"
	"agoratokens/issuer/natsauth"
	"agoratokens/wire"
)

const deviceUsage = `Usage:
  agora-token-issuer device add NAME --config FILE [--out DIR] [--local] [--broker-url URL[,URL…]]
      register a device: print its secret once, or with --out write
      DIR/password (mode 0600, not printed) and DIR/agent.yaml
  agora-token-issuer device rotate NAME --config FILE [--out DIR] [--local] [--broker-url URL[,URL…]]
      give a device a new secret (the old one stops working)
  agora-token-issuer device list --config FILE
  agora-token-issuer device remove NAME --config FILE
`

// Board paths of the agent (the Debian package's layout).
const (
	boardStateDir     = "/var/lib/agora-token-agent"
	boardSocket       = "/run/agora-token-agent/agent.sock"
	boardPasswordFile = "/etc/agora-token-agent/password"
)

func runDevice(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, rest, code, ok := subcommand("device", deviceUsage, []string{"add", "rotate", "list", "remove"}, args, stdout, stderr)
	if !ok {
		return code
	}
	fs := subcommandFlags("device", sub, deviceUsage, stderr)
	configPath := fs.String("config", "", "issuer config file")
	out := fs.String("out", "", "write DIR/password and DIR/agent.yaml instead of printing the secret")
	local := fs.Bool("local", false, "agent.yaml keeps its state and socket in --out DIR (runs in place)")
	brokerURL := fs.String("broker-url", "", "broker `URL[,URL…]` for agent.yaml, several for failover (default: from the issuer config)")
	wantNames := 1
	if sub == "list" {
		wantNames = 0
	}
	names, code, ok := parseNames(fs, rest, configPath, wantNames, "device name", deviceUsage, stderr)
	if !ok {
		return code
	}
	if (*local || *brokerURL != "") && *out == "" && (sub == "add" || sub == "rotate") {
		fmt.Fprintf(stderr, "agora-token-issuer device %s: --local and --broker-url shape agent.yaml and need --out\n", sub)
		return 2
	}
	cfg, err := loadDeviceConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer device %s: %v\n", sub, err)
		return 1
	}
	switch sub {
	case "list":
		err = listDevices(cfg, stdout)
	case "remove":
		err = removeDevice(cfg, names[0], stderr)
	default:
		err = addDevice(cfg, sub == "rotate", names[0], deviceOut{dir: *out, local: *local, brokerURL: *brokerURL}, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer device %s: %v\n", sub, err)
		return 1
	}
	return 0
}

// parseInterspersed parses flags that may come before or after the
// positional arguments ("add NAME --config F" as well as "add --config F
// NAME").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// deviceConfig is what the device commands need from the issuer config.
type deviceConfig struct {
	credentialsFile string // resolved
	listen          string // the embedded broker's listen address
	tls             bool
	topicRoot       string
	policyFile      string
	limits          issuer.Limits
	// nats is broker.nats: every change regenerates its auth_file.
	nats *issuer.NATSConfig
}

// loadDeviceConfig reads the issuer config with the issuer's own parser
// (its defaults, its validation), but not the certificate and password
// files it names: registering a device needs none of them.
func loadDeviceConfig(path string) (*deviceConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read issuer config: %w", err)
	}
	cfg, err := issuer.ParseConfig(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("issuer config %s: %w", path, err)
	}
	cfg.ResolvePaths(filepath.Dir(path))
	if n := cfg.Broker.NATS; n != nil {
		return &deviceConfig{credentialsFile: n.DevicesFile, topicRoot: cfg.TopicRoot, policyFile: cfg.PolicyFile,
			limits: cfg.Limits, nats: n}, nil
	}
	e := cfg.Broker.Embedded
	if e == nil {
		return nil, fmt.Errorf("issuer config %s: broker.embedded.credentials_file is not set; devices of an external broker are registered in that broker (see docs/broker.md)", path)
	}
	return &deviceConfig{credentialsFile: e.CredentialsFile, listen: e.Listen, tls: e.TLSCertFile != "", topicRoot: cfg.TopicRoot,
		policyFile: cfg.PolicyFile, limits: cfg.Limits}, nil
}

// agentBrokerURL is the URL an agent uses for a broker listening on
// listen. A wildcard listen address names no host an agent could dial:
// then the URL uses loopback for a local agent and this machine's host
// name for a board.
func agentBrokerURL(listen string, tls, local bool) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil && h != "" && !local {
			host = h
		} else {
			host = "127.0.0.1"
		}
	}
	scheme := "tcp"
	if tls {
		scheme = "ssl"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// deviceOut says where and how to write a device's files.
type deviceOut struct {
	dir       string
	local     bool
	brokerURL string
}

func addDevice(cfg *deviceConfig, rotate bool, name string, out deviceOut, stdout, stderr io.Writer) error {
	if err := wire.ValidateDeviceID(name); err != nil {
		return err
	}
	if cfg.nats != nil {
		if err := natsauth.ValidateDevice(name); err != nil {
			return err
		}
	}
	if out.dir != "" {
		// Fail before registering rather than leave a device whose
		// secret nobody has.
		if err := os.MkdirAll(out.dir, 0o700); err != nil {
			return fmt.Errorf("output directory: %w", err)
		}
		for _, f := range []string{"password", "agent.yaml"} {
			p := filepath.Join(out.dir, f)
			if _, err := os.Lstat(p); err == nil && !rotate {
				return fmt.Errorf("%s exists; remove it or choose another --out", p)
			}
		}
	}
	f, err := devices.Load(cfg.credentialsFile)
	if err != nil {
		return err
	}
	var secret string
	if rotate {
		secret, err = f.Rotate(name)
	} else {
		secret, err = f.Add(name)
	}
	if errors.Is(err, devices.ErrExists) {
		return fmt.Errorf("%w (use `device rotate %s` for a new secret)", err, name)
	}
	if err != nil {
		return err
	}
	if err := f.Save(cfg.credentialsFile); err != nil {
		return err
	}
	if cfg.nats != nil {
		if err := updateNATSAuth(cfg, f, name, secret, stderr); err != nil {
			return err
		}
	}
	verb := "registered"
	if rotate {
		verb = "rotated"
	}
	warnUngranted(cfg, name, stderr)
	if out.dir == "" {
		fmt.Fprintf(stderr, "device %s %s in %s; its secret (shown only now):\n", name, verb, cfg.credentialsFile)
		fmt.Fprintln(stdout, secret)
		return nil
	}
	keep := rotate && out.brokerURL == "" && !out.local && exists(filepath.Join(out.dir, "agent.yaml"))
	if keep {
		// A new secret changes nothing else: the agent.yaml written at
		// add (its --broker-url included) stays as it is.
		if err := atomicfile.WritePrivate(filepath.Join(out.dir, "password"), []byte(secret+"\n")); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "device %s rotated; wrote %s (kept %s)\n", name,
			filepath.Join(out.dir, "password"), filepath.Join(out.dir, "agent.yaml"))
		fmt.Fprintf(stdout, "copy password to the board as %s (mode 0600)\n", boardPasswordFile)
		return nil
	}
	if err := writeDeviceFiles(cfg, name, secret, out); err != nil {
		if !rotate {
			// Undo the registration: nobody holds the secret.
			if f.Remove(name) == nil && f.Save(cfg.credentialsFile) == nil && cfg.nats != nil {
				_ = updateNATSAuth(cfg, f, name, "", io.Discard)
			}
		}
		return err
	}
	fmt.Fprintf(stdout, "device %s %s; wrote %s and %s\n", name, verb,
		filepath.Join(out.dir, "agent.yaml"), filepath.Join(out.dir, "password"))
	if !out.local {
		fmt.Fprintf(stdout, "copy password to the board as %s (mode 0600) and agent.yaml as /etc/agora-token-agent/agent.yaml\n", boardPasswordFile)
	}
	return nil
}

// exists reports whether path names a file.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// warnUngranted says so when no policy rule grants the device a token:
// its agent would be refused (forbidden) at its first request. A policy
// that cannot be read is reported too; registering goes on either way.
func warnUngranted(cfg *deviceConfig, name string, stderr io.Writer) {
	if cfg.policyFile == "" {
		return
	}
	p, err := issuer.LoadPolicy(cfg.policyFile, cfg.limits)
	if err != nil {
		fmt.Fprintf(stderr, "warning: cannot check the policy for %s: %v\n", name, err)
		return
	}
	if g, err := p.Grants(name, nil); err != nil || len(g) == 0 {
		fmt.Fprintf(stderr, "warning: no rule of %s grants %s any token; its agent will be refused until a rule matches it\n", cfg.policyFile, name)
	}
}

// agentConfig fills the agent config template.
type agentConfig struct {
	DeviceID, BrokerURL, PasswordFile, TopicRoot, StateDir, SocketPath string
	// TLS: the URL is ssl://; Embedded: the broker is the issuer's own.
	TLS, Embedded bool
}

var agentTemplate = template.Must(template.New("agent.yaml").Parse(`# agora-token-agent config for device {{.DeviceID}}, written by
# agora-token-issuer device add.
device_id: {{printf "%q" .DeviceID}}
broker:
  url: {{printf "%q" .BrokerURL}}
  username: {{printf "%q" .DeviceID}}
  password_file: {{printf "%q" .PasswordFile}}
{{- if and .TLS .Embedded}}
  # The embedded broker speaks TLS: give the CA that signed its
  # certificate (or the certificate itself when self-signed).
  # ca_file: ca.pem
{{- else if .TLS}}
  # The broker speaks TLS: give the CA that signed its certificate
  # (omit to use the system's roots), and cert_file/key_file if it
  # asks for a client certificate.
  # ca_file: ca.pem
{{- else}}
  # ca_file: / cert_file: / key_file: for an ssl:// broker
{{- end}}
topic_root: {{printf "%q" .TopicRoot}}
# tokens: [video, signal]   # default: all the issuer grants
renew_before: 30s
request_timeout: 10s
state_dir: {{printf "%q" .StateDir}}
socket:
  path: {{printf "%q" .SocketPath}}
log_level: info
`))

func writeDeviceFiles(cfg *deviceConfig, name, secret string, out deviceOut) error {
	ac := agentConfig{
		DeviceID: name, BrokerURL: agentBrokerURL(cfg.listen, cfg.tls, out.local), TopicRoot: cfg.topicRoot, TLS: cfg.tls, Embedded: true,
		PasswordFile: boardPasswordFile, StateDir: boardStateDir, SocketPath: boardSocket,
	}
	if cfg.nats != nil {
		ac.BrokerURL, ac.TLS, ac.Embedded = strings.Join(cfg.nats.AgentURLs, ","), strings.HasPrefix(strings.Join(cfg.nats.AgentURLs, ","), "ssl://"), false
	}
	if out.brokerURL != "" {
		ac.BrokerURL = out.brokerURL
		ac.TLS = strings.HasPrefix(out.brokerURL, "ssl://")
		ac.Embedded = false
	}
	if ac.BrokerURL == "" {
		return errors.New("cannot derive the broker URL from the issuer config (broker.embedded.listen or broker.nats.agent_urls); pass --broker-url")
	}
	if out.local {
		// Relative paths resolve against agent.yaml's directory.
		ac.PasswordFile, ac.StateDir, ac.SocketPath = "password", "state", "agent.sock"
	}
	var b strings.Builder
	if err := agentTemplate.Execute(&b, ac); err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	if err := atomicfile.WritePrivate(filepath.Join(out.dir, "password"), []byte(secret+"\n")); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(out.dir, "agent.yaml"), []byte(b.String()), 0o644)
}

func listDevices(cfg *deviceConfig, stdout io.Writer) error {
	f, err := devices.Load(cfg.credentialsFile)
	if err != nil {
		return err
	}
	for _, d := range f.Devices() {
		fmt.Fprintf(stdout, "%s\t%s\n", d.Name, d.Created.Format("2006-01-02T15:04:05Z07:00"))
	}
	return nil
}

func removeDevice(cfg *deviceConfig, name string, stderr io.Writer) error {
	f, err := devices.Load(cfg.credentialsFile)
	if err != nil {
		return err
	}
	if err := f.Remove(name); err != nil {
		return err
	}
	if err := f.Save(cfg.credentialsFile); err != nil {
		return err
	}
	if cfg.nats != nil {
		if err := updateNATSAuth(cfg, f, name, "", stderr); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "device %s removed\n", name)
		return nil
	}
	fmt.Fprintf(stderr, "device %s removed; a running issuer drops it on SIGHUP (kill -HUP)\n", name)
	return nil
}
