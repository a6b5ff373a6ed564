package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"agoratokens/issuer"
	"agoratokens/issuer/devices"
	"agoratokens/issuer/fleetsim"
	"agoratokens/issuer/natsauth"
	"agoratokens/secretfile"
	"agoratokens/wire"
)

// Files init --nats writes beside the common ones.
const (
	initNATSPassword = "nats-issuer.password"
	initNATSAuth     = "nats-auth.conf"
	initNATSUser     = "agora-issuer"
)

// The ports of configs/nats/: node k (0, 1, 2) listens for NATS clients
// on 4222+k and for MQTT on 1883+k. init --nats derives each node's MQTT
// URL (for the agents) from its NATS URL with that offset.
const (
	natsClientPort = 4222
	natsMQTTPort   = 1883
)

// parseNATSURLs splits --nats and checks each URL.
func parseNATSURLs(list string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Hostname() == "" || u.Port() == "" {
			return nil, fmt.Errorf("--nats: %q is not nats://host:port", s)
		}
		if u.User != nil {
			return nil, fmt.Errorf("--nats: %q holds a user; init makes the issuer's login itself", u.Redacted())
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--nats: no URL")
	}
	return out, nil
}

// agentURLFor is the MQTT URL of the node whose NATS URL is s (see
// natsClientPort).
func agentURLFor(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		return ""
	}
	mqtt := natsMQTTPort + (p - natsClientPort)
	if p < natsClientPort || p-natsClientPort > 100 {
		mqtt = natsMQTTPort
	}
	scheme := "tcp"
	if u.Scheme == "tls" {
		scheme = "ssl"
	}
	return fmt.Sprintf("%s://%s:%d", scheme, u.Hostname(), mqtt)
}

// writeInitNATS writes a setup for a NATS cluster: issuer.yaml with
// broker.nats, the issuer's NATS password, an empty device registry and
// nats-auth.conf with the issuer's user, for every node to include.
func writeInitNATS(dir string, servers []string, ttl time.Duration, appID, cert string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	names := []string{initConfig, initPolicy, initCert, initDevices, initNATSPassword, initNATSAuth, filepath.Base(natsauth.HashesFile(initNATSAuth))}
	for _, name := range names {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%s already exists; init writes into a fresh directory only", filepath.Join(dir, name))
		}
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	password := hex.EncodeToString(b[:])
	var quoted, agents []string
	for _, s := range servers {
		quoted = append(quoted, strconv.Quote(s))
		agents = append(agents, strconv.Quote(agentURLFor(s)))
	}
	config := fmt.Sprintf(`# agora-token-issuer on a NATS cluster, written by "agora-token-issuer init --nats".
# Check it with: agora-token-issuer check-config --config %[1]s
app_id: %[2]s
certificates:
  - {id: primary, file: %[3]s}
active_certificate: primary
broker:
  nats:
    # The nodes' NATS client URLs; the client fails over between them.
    servers: [%[4]s]
    user: %[5]s
    password_file: %[6]s
    queue_group: %[7]s
    # The device registry, and the nats-server users made from it: every
    # node's config includes %[8]s (see configs/nats/node.conf).
    devices_file: %[9]s
    auth_file: %[8]s
    # The nodes' MQTT listeners, for the agents (broker.url of the
    # agent.yaml that "device add" writes), and for the fleet state
    # (device statuses, replicas, rotation campaign: NATS keeps retained
    # messages in its MQTT layer); mqtt_urls overrides them for the latter.
    agent_urls: [%[10]s]
topic_root: agora/v1
policy_file: %[11]s
limits:
  default_ttl: %[12]s
  max_ttl: 24h
  rate: {per_minute: 12, burst: 6}
# listen: 127.0.0.1:9464
log_level: info
`, initConfig, appID, initCert, strings.Join(quoted, ", "), initNATSUser, initNATSPassword, issuer.DefaultQueueGroup,
		initNATSAuth, initDevices, strings.Join(agents, ", "), initPolicy, shortDuration(ttl))
	if err := writeNew(filepath.Join(dir, initCert), []byte(cert+"\n"), 0o600); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(dir, initNATSPassword), []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	if err := devices.New().Save(filepath.Join(dir, initDevices)); err != nil {
		return fmt.Errorf("write %s: %w", initDevices, err)
	}
	if err := writeNew(filepath.Join(dir, initPolicy), []byte(initPolicyText(ttl)), 0o644); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(dir, initConfig), []byte(config), 0o644); err != nil {
		return err
	}
	n := &issuer.NATSConfig{User: initNATSUser, PasswordFile: filepath.Join(dir, initNATSPassword),
		AuthFile: filepath.Join(dir, initNATSAuth)}
	return writeNATSAuth(n, wire.NewTopics(""), nil, natsauth.Hashes{}, io.Discard)
}

// updateNATSAuth records a device's new secret (empty: it was removed)
// and regenerates the nats-server users from the registry f.
func updateNATSAuth(cfg *deviceConfig, f *devices.File, name, secret string, stderr io.Writer) error {
	n := cfg.nats
	hashes, err := natsauth.LoadHashes(natsauth.HashesFile(n.AuthFile))
	if err != nil {
		return err
	}
	if secret == "" {
		delete(hashes, name)
	} else {
		h, err := natsauth.Hash(secret)
		if err != nil {
			return err
		}
		hashes[name] = h
	}
	var names []string
	for _, d := range f.Devices() {
		names = append(names, d.Name)
	}
	if err := writeNATSAuth(n, wire.NewTopics(cfg.topicRoot), names, hashes, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s; apply it with `nats-server --signal reload` on every node\n", n.AuthFile)
	return nil
}

// writeNATSAuth saves the hashes of the devices registered and writes the
// fragment with them and the issuer's user.
func writeNATSAuth(n *issuer.NATSConfig, topics wire.Topics, names []string, hashes natsauth.Hashes, stderr io.Writer) error {
	registered := map[string]bool{}
	for _, d := range names {
		registered[d] = true
	}
	for d := range hashes {
		if !registered[d] {
			delete(hashes, d) // removed from the registry by hand
		}
	}
	var iss *natsauth.User
	if n.User != "" {
		pw, err := secretfile.Read(n.PasswordFile)
		if err != nil {
			return fmt.Errorf("broker.nats.password_file: %w", err)
		}
		h, err := natsauth.Hash(pw.Reveal())
		if err != nil {
			return err
		}
		iss = &natsauth.User{Name: n.User, Hash: h}
	}
	if err := hashes.Save(natsauth.HashesFile(n.AuthFile)); err != nil {
		return err
	}
	missing, err := natsauth.Write(n.AuthFile, topics, iss, names, hashes)
	if err != nil {
		return err
	}
	for _, d := range missing {
		fmt.Fprintf(stderr, "warning: %s has no NATS login yet (registered before the NATS setup); run `device rotate %s`\n", d, d)
	}
	return nil
}

// initPolicyText is the policy init writes.
func initPolicyText(ttl time.Duration) string {
	return fmt.Sprintf(`# Who may hold which token. Rules match device ids (globs), first match
# wins; a device no rule matches gets nothing. Only registered devices
# reach the issuer (the broker checks their secret), and {device} makes
# each one's channel and user its own id; narrow the glob ("cam-*") or
# add rules before this one to grant groups of devices differently.
deny: []
rules:
  - match: "*"
    tokens:
      video:  {service: rtc, channel: "{device}", uid: "{uid}", role: publisher, ttl: %[1]s}
      signal: {service: rtm, user: "{device}", ttl: %[1]s}
`, shortDuration(ttl))
}

// registerNATSFleet registers fleet-sim's devices for a NATS setup: in
// the registry of the issuer config at configPath (broker.nats), with
// their bcrypt hashes, and regenerates nats-auth.conf.
func registerNATSFleet(configPath string, seed []byte, names []string, stderr io.Writer) error {
	cfg, err := loadDeviceConfig(configPath)
	if err != nil {
		return err
	}
	if cfg.nats == nil {
		return fmt.Errorf("--format nats: %s has no broker.nats", configPath)
	}
	for _, n := range names {
		if err := natsauth.ValidateDevice(n); err != nil {
			return err
		}
	}
	if err := fleetsim.Register(cfg.credentialsFile, fleetsim.FormatIssuer, seed, names); err != nil {
		return err
	}
	f, err := devices.Load(cfg.credentialsFile)
	if err != nil {
		return err
	}
	hashes, err := natsauth.LoadHashes(natsauth.HashesFile(cfg.nats.AuthFile))
	if err != nil {
		return err
	}
	for _, n := range names {
		if hashes[n], err = natsauth.Hash(fleetsim.Secret(seed, n)); err != nil {
			return err
		}
	}
	var all []string
	for _, d := range f.Devices() {
		all = append(all, d.Name)
	}
	if err := writeNATSAuth(cfg.nats, wire.NewTopics(cfg.topicRoot), all, hashes, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s; apply it with `nats-server --signal reload` on every node\n", cfg.nats.AuthFile)
	return nil
}
