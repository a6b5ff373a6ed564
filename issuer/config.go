// Package issuer is the cloud half of the token plumbing: it holds an
// Agora project's App Certificate(s), decides from a policy which device
// may hold which token, signs AccessToken2 tokens and publishes them on
// each device's own MQTT topic. It also serves health, metrics and an
// authenticated HTTP API compatible with the classic token servers.
//
// The pieces, one file each: config (this file), policy (who gets what),
// signer (policy grant → signed wire.Grant), limiter and replay cache
// (per-device rate limit and idempotent retries), service (the MQTT loop)
// and http (health, metrics, token API), with httpapi_* and apikeys
// (the seed token servers' endpoints, API keys and their grants).
package issuer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/brokertls"
	"agoratokens/configfile"
	"agoratokens/issuer/devices"
	"agoratokens/redact"
	"agoratokens/wire"
)

// Defaults of the limits.
const (
	DefaultTTL          = time.Hour
	DefaultMaxTTL       = 24 * time.Hour
	DefaultRatePerMin   = 12
	DefaultRateBurst    = 6
	DefaultMaxPayload   = wire.MaxPayload
	DefaultEmbeddedAddr = "127.0.0.1:1883"
)

// Config is the issuer's configuration file. Zero fields take the
// documented defaults; LoadConfig validates it and reads its secrets.
type Config struct {
	// AppID is the Agora project's App ID (32 hex characters).
	AppID string `yaml:"app_id"`
	// Certificates lists the App Certificates the issuer knows; the
	// active one signs, all of them verify (rotation).
	Certificates []CertificateConfig `yaml:"certificates"`
	// ActiveCertificate is the id of the certificate that signs. It may
	// be left out when there is exactly one certificate.
	ActiveCertificate string `yaml:"active_certificate"`
	// Broker is where the issuer meets its devices.
	Broker BrokerConfig `yaml:"broker"`
	// TopicRoot prefixes every topic (default agora/v1).
	TopicRoot string `yaml:"topic_root"`
	// ShareGroup, when set, makes replicas share requests through the
	// MQTT shared subscription $share/<group>/….
	ShareGroup string `yaml:"share_group"`
	// PolicyFile is the policy's YAML file.
	PolicyFile string `yaml:"policy_file"`
	// Limits bound lifetimes, request rates and sizes.
	Limits Limits `yaml:"limits"`
	// Listen is the address of /healthz, /readyz, /metrics and the HTTP
	// token API; empty turns the HTTP server off.
	Listen string `yaml:"listen"`
	// HTTP configures the token API on Listen.
	HTTP HTTPConfig `yaml:"http"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `yaml:"log_level"`
	// StateDir keeps what the issuer must remember across restarts: the
	// latest expiry it signed per certificate, the devices it pushed in
	// a rotation campaign and (embedded broker) the running service's
	// broker login for the fleet commands. Default: "state" beside the
	// config file.
	StateDir string `yaml:"state_dir"`

	certs    []Certificate // read by Resolve
	password Secret        // broker password, read by Resolve
	// toolPassword is broker.tool_password_file's, read by Resolve.
	toolPassword Secret
	warnings     []error          // found by Resolve
	keys         *configfile.Keys // where each key stands, for errors
}

// CertificateConfig names an App Certificate file.
type CertificateConfig struct {
	// ID is the key id replies carry as "kid".
	ID string `yaml:"id"`
	// File holds the certificate: 32 hex characters, mode 0600 or 0640.
	File string `yaml:"file"`
}

// BrokerConfig is either Embedded or an external broker's URL.
type BrokerConfig struct {
	// Embedded runs an MQTT broker inside the issuer.
	Embedded *EmbeddedBrokerConfig `yaml:"embedded"`
	// NATS speaks NATS to a NATS cluster (see config_nats.go).
	NATS *NATSConfig `yaml:"nats"`
	// URL is an external broker: tcp://host:port or ssl://host:port.
	URL string `yaml:"url"`
	// ClientID is the issuer's MQTT client id; empty picks a unique one
	// per process (replicas need distinct ids).
	ClientID string `yaml:"client_id"`
	// Username and PasswordFile log in to the broker.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// ToolUsername and ToolPasswordFile, optional, are the login of the
	// operator commands (fleet status, rotate, certificate remove). A
	// broker that ties the client id to the user name (the shipped
	// mosquitto.conf) would otherwise close the running issuer's
	// connection when a command logs in as the issuer.
	ToolUsername     string `yaml:"tool_username"`
	ToolPasswordFile string `yaml:"tool_password_file"`
	// CAFile verifies an ssl:// broker; CertFile and KeyFile are the
	// issuer's client certificate.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// EmbeddedBrokerConfig configures the in-process broker.
type EmbeddedBrokerConfig struct {
	// Listen is the broker's address (default 127.0.0.1:1883).
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile, when set, make it speak TLS.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// CredentialsFile holds the devices' password hashes.
	CredentialsFile string `yaml:"credentials_file"`
}

// Limits bound what the issuer hands out and accepts.
type Limits struct {
	// DefaultTTL is a token's lifetime when the policy names none (1h).
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// MaxTTL caps every lifetime (24h, Agora's maximum).
	MaxTTL time.Duration `yaml:"max_ttl"`
	// Rate limits each device's requests.
	Rate RateConfig `yaml:"rate"`
	// MaxPayload is the largest request accepted, in bytes (16384).
	MaxPayload int `yaml:"max_payload"`
}

// RateConfig is a token bucket per device: Burst requests at once, then
// PerMinute a minute. Zero means the default (12 a minute, burst 6).
type RateConfig struct {
	PerMinute int `yaml:"per_minute"`
	Burst     int `yaml:"burst"`
}

// HTTPConfig configures the HTTP token API.
type HTTPConfig struct {
	// APIKeysFile lists the SHA-256 hashes of the API keys and the
	// principal (device id) each one acts as. Without it the token API
	// is off; health and metrics still run.
	APIKeysFile string `yaml:"api_keys_file"`
	// KeyRate is the default rate limit of each API key, separate from
	// the devices' limits.rate (default 3000 a minute, burst 500).
	KeyRate RateConfig `yaml:"key_rate"`
	// CORSAllowOrigin lists the browser origins allowed to call the API
	// ("*" for any); empty takes $CORS_ALLOW_ORIGIN (comma-separated).
	CORSAllowOrigin []string `yaml:"cors_allow_origin"`
	// InsecureAllowAnonymous, for local development only, lets callers
	// without a key mint what it grants.
	InsecureAllowAnonymous *AnonymousConfig `yaml:"insecure_allow_anonymous"`
	// TLSCertFile and TLSKeyFile make the listener speak HTTPS; both are
	// read again on reload.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

// LoadConfig reads, validates and resolves the config file at path:
// relative paths in it are relative to the file's directory, and the
// certificate and password files are read (and their modes checked).
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Resolve(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, cfg.keys.Locate(err))
	}
	return cfg, nil
}

// ParseConfig decodes a config (unknown keys are errors), fills defaults
// and validates everything that needs no file.
func ParseConfig(r io.Reader) (*Config, error) {
	var cfg Config
	keys, err := configfile.Parse(r, &cfg, cfg.fill)
	if err != nil {
		return nil, err
	}
	cfg.keys = keys
	return &cfg, nil
}

// fill sets defaults and validates.
func (c *Config) fill() error {
	if c.AppID == "" {
		return fmt.Errorf("app_id: missing")
	}
	if err := accesstoken.ValidateHex32("app id", c.AppID); err != nil {
		return fmt.Errorf("app_id: %w", err)
	}
	if len(c.Certificates) == 0 {
		return fmt.Errorf("certificates: at least one {id, file} is needed")
	}
	seen := map[string]bool{}
	for i, cc := range c.Certificates {
		key := fmt.Sprintf("certificates[%d]", i)
		if err := wire.ValidateName("id", cc.ID); err != nil {
			return fmt.Errorf("%s.id: %w", key, err)
		}
		if seen[cc.ID] {
			return fmt.Errorf("%s.id: %q is listed twice", key, cc.ID)
		}
		seen[cc.ID] = true
		if cc.File == "" {
			return fmt.Errorf("%s.file: missing", key)
		}
	}
	if c.ActiveCertificate == "" {
		if len(c.Certificates) > 1 {
			return fmt.Errorf("active_certificate: missing; say which of the %d certificates signs", len(c.Certificates))
		}
		c.ActiveCertificate = c.Certificates[0].ID
	}
	if !seen[c.ActiveCertificate] {
		return fmt.Errorf("active_certificate: %q is not the id of a listed certificate", c.ActiveCertificate)
	}
	if err := c.Broker.fill(); err != nil {
		return err
	}
	if c.TopicRoot == "" {
		c.TopicRoot = wire.DefaultRoot
	}
	if err := wire.ValidateRoot(c.TopicRoot); err != nil {
		return fmt.Errorf("topic_root: %w", err)
	}
	c.TopicRoot = strings.TrimSuffix(c.TopicRoot, "/")
	if c.Broker.NATS != nil && strings.Contains(c.TopicRoot, ".") {
		return fmt.Errorf("topic_root: %q holds a \".\", which a NATS cluster's MQTT listener refuses in topics", c.TopicRoot)
	}
	if c.ShareGroup != "" {
		if err := wire.ValidateName("share group", c.ShareGroup); err != nil {
			return fmt.Errorf("share_group: %w", err)
		}
	}
	if c.PolicyFile == "" {
		return fmt.Errorf("policy_file: missing")
	}
	if err := c.Limits.fill(); err != nil {
		return err
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return fmt.Errorf("listen: %q is not host:port: %w", c.Listen, err)
		}
	}
	if c.HTTP.APIKeysFile != "" && c.Listen == "" {
		return fmt.Errorf("http.api_keys_file: set, but listen is empty so no HTTP server would run")
	}
	if err := c.HTTP.fill(c.Listen != ""); err != nil {
		return err
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	return nil
}

func (b *BrokerConfig) fill() error {
	if b.NATS != nil {
		return b.NATS.fill(b)
	}
	external := b.URL != "" || b.Username != "" || b.PasswordFile != "" || b.CAFile != "" ||
		b.CertFile != "" || b.KeyFile != "" || b.ToolUsername != "" || b.ToolPasswordFile != ""
	switch {
	case b.Embedded != nil && external:
		return fmt.Errorf("broker: set either embedded or url (with its client settings), not both")
	case b.Embedded == nil && b.URL == "":
		return fmt.Errorf("broker: missing; set broker.embedded or broker.url")
	}
	if b.ClientID != "" {
		if err := wire.ValidateName("client id", b.ClientID); err != nil {
			return fmt.Errorf("broker.client_id: %w", err)
		}
	}
	if e := b.Embedded; e != nil {
		if e.Listen == "" {
			e.Listen = DefaultEmbeddedAddr
		}
		if _, _, err := net.SplitHostPort(e.Listen); err != nil {
			return fmt.Errorf("broker.embedded.listen: %q is not host:port: %w", e.Listen, err)
		}
		if (e.TLSCertFile == "") != (e.TLSKeyFile == "") {
			return fmt.Errorf("broker.embedded: tls_cert_file and tls_key_file go together")
		}
		if e.CredentialsFile == "" {
			return fmt.Errorf("broker.embedded.credentials_file: missing (devices log in with the credentials it holds)")
		}
		return nil
	}
	u, err := redact.ParseURL(b.URL)
	if err != nil {
		return fmt.Errorf("broker.url: %w", err)
	}
	if u.Scheme != "tcp" && u.Scheme != "ssl" {
		return fmt.Errorf("broker.url: scheme %q is not tcp or ssl", u.Scheme)
	}
	if u.Port() == "" || u.Hostname() == "" {
		return fmt.Errorf("broker.url: %s needs a host and a port", redact.URL(b.URL))
	}
	if u.User != nil {
		return fmt.Errorf("broker.url: put the user in broker.username and the password in broker.password_file, not in the url")
	}
	if u.Scheme == "tcp" && (b.CAFile != "" || b.CertFile != "" || b.KeyFile != "") {
		return fmt.Errorf("broker: ca_file, cert_file and key_file need an ssl:// url")
	}
	if (b.CertFile == "") != (b.KeyFile == "") {
		return fmt.Errorf("broker: cert_file and key_file go together")
	}
	if b.PasswordFile != "" && b.Username == "" {
		return fmt.Errorf("broker.password_file: set without broker.username")
	}
	if b.ToolPasswordFile != "" && b.ToolUsername == "" {
		return fmt.Errorf("broker.tool_password_file: set without broker.tool_username")
	}
	return nil
}

func (l *Limits) fill() error {
	if l.DefaultTTL == 0 {
		l.DefaultTTL = DefaultTTL
	}
	if l.MaxTTL == 0 {
		l.MaxTTL = DefaultMaxTTL
	}
	if l.Rate.PerMinute == 0 {
		l.Rate.PerMinute = DefaultRatePerMin
	}
	if l.Rate.Burst == 0 {
		l.Rate.Burst = DefaultRateBurst
	}
	if l.MaxPayload == 0 {
		l.MaxPayload = DefaultMaxPayload
	}
	maxExpire := time.Duration(accesstoken.MaxExpire) * time.Second
	switch {
	case l.MaxTTL < time.Second || l.MaxTTL > maxExpire:
		return fmt.Errorf("limits.max_ttl: %v is not between 1s and %v", l.MaxTTL, maxExpire)
	case l.DefaultTTL < time.Second || l.DefaultTTL > l.MaxTTL:
		return fmt.Errorf("limits.default_ttl: %v is not between 1s and max_ttl %v", l.DefaultTTL, l.MaxTTL)
	case l.Rate.PerMinute < 0:
		return fmt.Errorf("limits.rate.per_minute: %d is negative", l.Rate.PerMinute)
	case l.Rate.Burst < 0:
		return fmt.Errorf("limits.rate.burst: %d is negative", l.Rate.Burst)
	case l.MaxPayload < 64 || l.MaxPayload > wire.MaxPayload:
		return fmt.Errorf("limits.max_payload: %d is not between 64 and %d bytes", l.MaxPayload, wire.MaxPayload)
	}
	if l.DefaultTTL%time.Second != 0 || l.MaxTTL%time.Second != 0 {
		return fmt.Errorf("limits: default_ttl and max_ttl must be whole seconds")
	}
	return nil
}

// ResolvePaths makes the config's relative paths relative to dir (the
// config file's directory). Resolve does this too; ResolvePaths is for
// commands that need the paths but none of the secrets.
func (c *Config) ResolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.Certificates {
		abs(&c.Certificates[i].File)
	}
	abs(&c.PolicyFile)
	if c.StateDir == "" {
		c.StateDir = "state"
	}
	abs(&c.StateDir)
	abs(&c.HTTP.APIKeysFile)
	abs(&c.HTTP.TLSCertFile)
	abs(&c.HTTP.TLSKeyFile)
	abs(&c.Broker.PasswordFile)
	abs(&c.Broker.ToolPasswordFile)
	abs(&c.Broker.CAFile)
	abs(&c.Broker.CertFile)
	abs(&c.Broker.KeyFile)
	if n := c.Broker.NATS; n != nil {
		n.resolvePaths(dir)
	}
	if e := c.Broker.Embedded; e != nil {
		abs(&e.TLSCertFile)
		abs(&e.TLSKeyFile)
		abs(&e.CredentialsFile)
	}
}

// Resolve makes the config's relative paths relative to dir and loads
// every file the config names as serve will: the certificates and the
// broker password (checking their modes), the broker's TLS files (a
// private key must be 0600 or 0640), and the embedded broker's device
// credentials. What serve accepts but should not go unnoticed (no
// credentials file yet) is in Warnings.
func (c *Config) Resolve(dir string) error {
	c.ResolvePaths(dir)
	c.certs = c.certs[:0]
	for i, cc := range c.Certificates {
		v, err := readCertificateFile(fmt.Sprintf("certificates[%d].file", i), cc.File)
		if err != nil {
			return err
		}
		for _, prev := range c.certs {
			if prev.Value.Equal(v) {
				return fmt.Errorf("certificates[%d].file: same certificate as id %q", i, prev.ID)
			}
		}
		c.certs = append(c.certs, Certificate{ID: cc.ID, Value: v})
	}
	if c.Broker.PasswordFile != "" {
		p, err := readSecretFile("broker.password_file", c.Broker.PasswordFile)
		if err != nil {
			return err
		}
		c.password = p
	}
	if c.Broker.ToolPasswordFile != "" {
		p, err := readSecretFile("broker.tool_password_file", c.Broker.ToolPasswordFile)
		if err != nil {
			return err
		}
		c.toolPassword = p
	}
	if _, err := os.Stat(c.PolicyFile); err != nil {
		return fmt.Errorf("policy_file: %w", err)
	}
	if c.HTTP.TLSCertFile != "" {
		if _, err := brokertls.KeyPair("http.tls_cert_file", c.HTTP.TLSCertFile, "http.tls_key_file", c.HTTP.TLSKeyFile); err != nil {
			return err
		}
	}
	c.warnings = nil
	if n := c.Broker.NATS; n != nil {
		return c.resolveNATS(n)
	}
	if e := c.Broker.Embedded; e != nil {
		return c.resolveEmbedded(e)
	}
	if c.Broker.CAFile != "" || c.Broker.CertFile != "" || c.Broker.KeyFile != "" {
		if _, err := brokertls.Client("broker.", brokertls.Files{CAFile: c.Broker.CAFile, CertFile: c.Broker.CertFile, KeyFile: c.Broker.KeyFile}); err != nil {
			return err
		}
	}
	return nil
}

// resolveEmbedded loads what the embedded broker will load at start: its
// TLS certificate and key, and the device credentials file.
func (c *Config) resolveEmbedded(e *EmbeddedBrokerConfig) error {
	if e.TLSCertFile != "" {
		if _, err := brokertls.KeyPair("broker.embedded.tls_cert_file", e.TLSCertFile, "broker.embedded.tls_key_file", e.TLSKeyFile); err != nil {
			return err
		}
	}
	const key = "broker.embedded.credentials_file"
	if _, err := os.Stat(e.CredentialsFile); errors.Is(err, fs.ErrNotExist) {
		c.warn(key, "%s does not exist: no device can log in until `agora-token-issuer device add` registers one", e.CredentialsFile)
		return nil
	}
	f, err := devices.Load(e.CredentialsFile)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if f.Len() == 0 {
		c.warn(key, "%s holds no device: none can log in until `agora-token-issuer device add` registers one", e.CredentialsFile)
	}
	return nil
}

// warn records something serve accepts but an operator should know.
func (c *Config) warn(key, format string, a ...any) {
	c.warnings = append(c.warnings, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
}

// Warnings returns what Resolve found that serve accepts but an operator
// should hear about (a device credentials file that does not exist),
// each naming its key and file.
func (c *Config) Warnings() []error { return c.keys.LocateAll(c.warnings) }

// Certs returns the certificates read by LoadConfig (or Resolve), in the
// order listed.
func (c *Config) Certs() []Certificate { return append([]Certificate(nil), c.certs...) }

// BrokerPassword returns the password read from broker.password_file.
func (c *Config) BrokerPassword() Secret { return c.password }

// Topics returns the config's topic names.
func (c *Config) Topics() wire.Topics { return wire.NewTopics(c.TopicRoot) }

// ParseLogLevel maps debug, info, warn or error to a slog level.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch s {
	case "debug", "info", "warn", "error":
		if err := l.UnmarshalText([]byte(s)); err != nil {
			return 0, err
		}
		return l, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}
