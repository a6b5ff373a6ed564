package issuer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"agoratokens/issuer/natsauth"
	"agoratokens/redact"
	"agoratokens/wire"
)

// DefaultQueueGroup is the NATS queue group the replicas share requests
// through.
const DefaultQueueGroup = "agora-issuers"

// NATSConfig is broker.nats: the issuer speaks NATS to a NATS cluster
// whose MQTT listeners serve the devices (they still speak MQTT).
type NATSConfig struct {
	// Servers are the cluster's client URLs (nats://host:4222 or
	// tls://host:4222); the client library fails over between them.
	Servers []string `yaml:"servers"`
	// User and PasswordFile log the issuer in; or CredentialsFile, a
	// NATS .creds file (JWT and nkey seed).
	User            string `yaml:"user"`
	PasswordFile    string `yaml:"password_file"`
	CredentialsFile string `yaml:"credentials_file"`
	// QueueGroup shares requests between replicas (default
	// agora-issuers).
	QueueGroup string `yaml:"queue_group"`
	// DevicesFile is the device registry kept by `agora-token-issuer
	// device add|rotate|remove` (default devices.yaml beside the
	// config); AuthFile is the nats-server config fragment they
	// regenerate from it (default nats-auth.conf beside the config).
	DevicesFile string `yaml:"devices_file"`
	AuthFile    string `yaml:"auth_file"`
	// AgentURLs are the MQTT listeners of the cluster's nodes, written
	// into the agent.yaml of each device added (broker.url list).
	AgentURLs []string `yaml:"agent_urls"`
	// MQTTURLs are the MQTT listeners the issuer and its operator
	// commands (fleet status, rotate, certificate remove) reach the
	// retained fleet state through: the devices' statuses, the
	// replicas' presence and the rotation campaign, which NATS keeps
	// in its MQTT layer only (NATS core has no retained messages).
	// Default: AgentURLs.
	MQTTURLs []string `yaml:"mqtt_urls"`
}

// FleetURLs are the MQTT listeners for the retained fleet state
// (mqtt_urls, else agent_urls); empty means no fleet view.
func (n *NATSConfig) FleetURLs() []string {
	if len(n.MQTTURLs) > 0 {
		return n.MQTTURLs
	}
	return n.AgentURLs
}

// fill checks broker.nats and fills its defaults. Nothing else of
// broker may be set beside it.
func (n *NATSConfig) fill(b *BrokerConfig) error {
	if b.Embedded != nil || b.URL != "" || b.Username != "" || b.PasswordFile != "" ||
		b.CAFile != "" || b.CertFile != "" || b.KeyFile != "" {
		return fmt.Errorf("broker: set either nats, embedded or url, not more than one")
	}
	if len(n.Servers) == 0 {
		return fmt.Errorf("broker.nats.servers: missing (nats://host:4222, one per node)")
	}
	for i, s := range n.Servers {
		key := fmt.Sprintf("broker.nats.servers[%d]", i)
		u, err := redact.ParseURL(s)
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w", key, err)
		case u.Scheme != "nats" && u.Scheme != "tls":
			return fmt.Errorf("%s: scheme %q is not nats or tls", key, u.Scheme)
		case u.Hostname() == "" || u.Port() == "":
			return fmt.Errorf("%s: %s needs a host and a port", key, redact.URL(s))
		case u.User != nil:
			return fmt.Errorf("%s: put the user in broker.nats.user and the password in broker.nats.password_file, not in the url", key)
		}
	}
	switch {
	case n.CredentialsFile != "" && (n.User != "" || n.PasswordFile != ""):
		return fmt.Errorf("broker.nats: set either credentials_file or user and password_file, not both")
	case n.PasswordFile != "" && n.User == "":
		return fmt.Errorf("broker.nats.password_file: set without broker.nats.user")
	case n.User != "" && n.PasswordFile == "":
		return fmt.Errorf("broker.nats.user: set without broker.nats.password_file")
	}
	if n.QueueGroup == "" {
		n.QueueGroup = DefaultQueueGroup
	}
	if err := wire.ValidateName("queue group", n.QueueGroup); err != nil {
		return fmt.Errorf("broker.nats.queue_group: %w", err)
	}
	if n.DevicesFile == "" {
		n.DevicesFile = "devices.yaml"
	}
	if n.AuthFile == "" {
		n.AuthFile = "nats-auth.conf"
	}
	for _, l := range []struct {
		key  string
		urls []string
	}{{"agent_urls", n.AgentURLs}, {"mqtt_urls", n.MQTTURLs}} {
		key := l.key
		for i, s := range l.urls {
			u, err := redact.ParseURL(s)
			if err != nil || (u.Scheme != "tcp" && u.Scheme != "ssl") || u.Port() == "" || u.User != nil {
				return fmt.Errorf("broker.nats.%s[%d]: %s is not tcp://host:port or ssl://host:port", key, i, redact.URL(s))
			}
		}
	}
	return nil
}

// fleetLogin says why the fleet state cannot be reached over the
// cluster's MQTT listeners, nil if it can.
func (n *NATSConfig) fleetLogin() error {
	switch {
	case len(n.FleetURLs()) == 0:
		return fmt.Errorf("broker.nats: no MQTT listener for the fleet state (devices' statuses, replicas, rotation campaign): set broker.nats.mqtt_urls (or agent_urls) to the nodes' MQTT URLs")
	case n.User == "":
		return fmt.Errorf("broker.nats: the fleet state is read over MQTT, which cannot log in with a credentials file: set broker.nats.user and password_file")
	}
	return nil
}

// resolvePaths makes broker.nats's files relative to dir.
func (n *NATSConfig) resolvePaths(dir string) {
	for _, p := range []*string{&n.PasswordFile, &n.CredentialsFile, &n.DevicesFile, &n.AuthFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// resolveNATS reads what the NATS connection needs at start: the
// password (its mode checked) or the credentials file.
func (c *Config) resolveNATS(n *NATSConfig) error {
	if n.PasswordFile != "" {
		p, err := readSecretFile("broker.nats.password_file", n.PasswordFile)
		if err != nil {
			return err
		}
		c.password = p
	}
	if n.CredentialsFile != "" {
		fi, err := os.Stat(n.CredentialsFile)
		if err != nil {
			return fmt.Errorf("broker.nats.credentials_file: %w", err)
		}
		if fi.Mode().Perm()&0o037 != 0 {
			return fmt.Errorf("broker.nats.credentials_file: %s is mode %04o; it holds a private key: make it 0600 or 0640", n.CredentialsFile, fi.Mode().Perm())
		}
	}
	return nil
}

// same reports whether two broker.nats (nil or not) are the same: a
// change needs a restart.
func (n *NATSConfig) same(o *NATSConfig) bool {
	if n == nil || o == nil {
		return n == o
	}
	return slices.Equal(n.Servers, o.Servers) && n.User == o.User && n.PasswordFile == o.PasswordFile &&
		n.CredentialsFile == o.CredentialsFile && n.QueueGroup == o.QueueGroup &&
		slices.Equal(n.FleetURLs(), o.FleetURLs())
}

// describe is check-config's line for broker.nats.
func (n *NATSConfig) describe() string {
	who := "no login"
	switch {
	case n.CredentialsFile != "":
		who = "credentials file " + n.CredentialsFile
	case n.User != "":
		who = "user " + n.User + " with password file"
	}
	fleet := "no fleet view (set broker.nats.mqtt_urls or agent_urls)"
	if urls := n.FleetURLs(); len(urls) > 0 {
		fleet = "fleet state over MQTT at " + strings.Join(urls, ",")
	}
	return fmt.Sprintf("NATS %s as %s, queue group %s; %s; devices in %s, nats-server users in %s",
		strings.Join(n.Servers, ","), who, n.QueueGroup, fleet, n.DevicesFile, n.AuthFile)
}

// natsSubject and mqttTopic map between MQTT topics and NATS subjects
// as nats-server's MQTT listener does.
func natsSubject(topic string) string { return natsauth.Subject(topic) }
func mqttTopic(subject string) string { return natsauth.Topic(subject) }
