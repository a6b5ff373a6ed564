package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"agoratokens/accesstoken"
	"agoratokens/configfile"
	"agoratokens/redact"
	"agoratokens/secretfile"
	"agoratokens/wire"
)

// Defaults of the configuration.
const (
	DefaultStateDir         = "/var/lib/agora-token-agent"
	DefaultSocketPath       = "/run/agora-token-agent/agent.sock"
	DefaultSocketMode       = 0o660
	DefaultMaxClients       = 32
	DefaultRenewBefore      = 30 * time.Second
	DefaultRequestTimeout   = 10 * time.Second
	DefaultRenewMinInterval = 10 * time.Second
	DefaultKeepAlive        = 60 * time.Second
	DefaultHTTPExpiry       = time.Hour
	DefaultTopicRoot        = wire.DefaultRoot
	// Retry delays: DefaultBackoffInitial, growing by
	// DefaultBackoffMultiplier per failure up to DefaultBackoffMax, each
	// randomised by ±DefaultBackoffJitter.
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = time.Minute
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffJitter     = 0.2
	// NoJitter in BackoffConfig.Jitter turns randomisation off: a zero
	// Jitter means "not set" and gets DefaultBackoffJitter.
	NoJitter = -1.0
	// AutoDeviceID asks the agent to derive the device id from the board.
	AutoDeviceID = "auto"
)

// The default renew_window: renewal starts at a random point of each
// token's life between these fractions of its lifetime.
const (
	DefaultRenewWindowStart = 0.6
	DefaultRenewWindowEnd   = 0.8
)

// HTTP source kinds.
const (
	HTTPKindIssuer       = "issuer"
	HTTPKindTokenService = "agora-token-service"
)

// Config is the agent's validated configuration. ParseConfig and
// LoadConfig build it; New fills what is still zero with the defaults.
type Config struct {
	// DeviceID is the device's id, or AutoDeviceID.
	DeviceID string
	// DeviceIDPrefix is put before an automatic device id.
	DeviceIDPrefix string
	// Broker is set when tokens come over MQTT; HTTP otherwise.
	Broker *BrokerConfig
	HTTP   *HTTPConfig
	// TopicRoot is the MQTT topic root.
	TopicRoot string
	// Tokens are the token names to keep; empty means every token the
	// issuer grants.
	Tokens []string
	// RenewBefore is how long before expiry renewal starts at the
	// latest, and will_expire is emitted if no fresh token has come.
	RenewBefore time.Duration
	// RenewWindow is where in each token's life its renewal starts (a
	// random point, see RenewWindow); zero: the default window.
	RenewWindow RenewWindow
	// RenewMinInterval is the least time between two renewals forced by
	// Renew (a media process reporting a token error).
	RenewMinInterval time.Duration
	Backoff          BackoffConfig
	// RequestTimeout bounds the wait for one reply.
	RequestTimeout time.Duration
	// StateDir holds the persisted tokens.
	StateDir string
	Socket   SocketConfig
	LED      LEDConfig
	LogLevel slog.Level

	keys *configfile.Keys // where each key stands in the file, for errors
}

// BrokerConfig is the MQTT connection.
type BrokerConfig struct {
	URL string // tcp://host:port or ssl://host:port: the first of URLs
	// URLs are the brokers the agent may use, in order (broker.url as a
	// list or a comma-separated string): it dials the next after each
	// failed dial or lost connection. Empty means URL alone.
	URLs         []string
	Username     string // default: the device id
	PasswordFile string
	CAFile       string
	CertFile     string
	KeyFile      string
	KeepAlive    time.Duration

	password *secretfile.Secret
}

// HTTPConfig is the HTTP token source, used instead of a broker.
type HTTPConfig struct {
	URL             string
	BearerTokenFile string
	// Kind is HTTPKindIssuer or HTTPKindTokenService.
	Kind string
	// Fetch says what to ask an agora-token-service for, per token name.
	Fetch []HTTPFetch

	bearer *secretfile.Secret
}

// HTTPFetch is one token fetched from an agora-token-service.
type HTTPFetch struct {
	Name    string
	Service string // rtc or rtm
	Channel string // rtc
	UID     string // numeric uid (rtc), or the RTM user id
	Account string // rtc user account, instead of UID
	Role    string // publisher or subscriber (rtc)
	Expiry  time.Duration
}

// BackoffConfig shapes the retry delays. Zero fields get the defaults
// (DefaultBackoffInitial …); Jitter NoJitter turns randomisation off.
type BackoffConfig struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

// randomization is Jitter as the backoff package takes it: 0 for
// NoJitter (and for an unset Jitter, which fillDefaults replaces first).
func (b BackoffConfig) randomization() float64 {
	if b.Jitter == NoJitter {
		return 0
	}
	return b.Jitter
}

// SocketConfig is the Unix socket the media processes talk to.
type SocketConfig struct {
	Path       string
	Mode       os.FileMode
	Group      string
	AllowUIDs  []int
	AllowGIDs  []int
	MaxClients int
}

// LEDConfig is the status LED, passed through to package device.
type LEDConfig struct {
	GPIO      string
	Sysfs     string
	ActiveLow bool
}

// fillDefaults gives every zero field of c its default: the one place
// the defaults are filled in, used by New for a Config built in Go and by
// the config file (whose absent keys are zero). It does not validate.
func (c *Config) fillDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.RenewBefore, DefaultRenewBefore)
	if c.RenewWindow == (RenewWindow{}) {
		c.RenewWindow = RenewWindow{DefaultRenewWindowStart, DefaultRenewWindowEnd}
	}
	def(&c.RenewMinInterval, DefaultRenewMinInterval)
	def(&c.RequestTimeout, DefaultRequestTimeout)
	def(&c.Backoff.Initial, DefaultBackoffInitial)
	def(&c.Backoff.Max, DefaultBackoffMax)
	if c.Backoff.Multiplier == 0 {
		c.Backoff.Multiplier = DefaultBackoffMultiplier
	}
	if c.Backoff.Jitter == 0 {
		c.Backoff.Jitter = DefaultBackoffJitter
	}
	if c.TopicRoot == "" {
		c.TopicRoot = DefaultTopicRoot
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Broker != nil {
		def(&c.Broker.KeepAlive, DefaultKeepAlive)
		if len(c.Broker.URLs) == 0 && c.Broker.URL != "" {
			c.Broker.URLs = []string{c.Broker.URL}
		}
	}
}

// LoadConfig reads, parses and validates the config file at path, and
// reads the secret files it names (checking their modes).
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(bytes.NewReader(b), filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.ReadSecrets(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, cfg.keys.Locate(err))
	}
	return cfg, nil
}

// ParseConfig parses and validates a YAML config. Unknown keys are
// errors; relative paths are resolved against dir (the config file's
// directory). Secret files are not read here: see ReadSecrets.
func ParseConfig(r io.Reader, dir string) (*Config, error) {
	var f fileConfig
	var c *Config
	keys, err := configfile.Parse(r, &f, func() (err error) {
		c, err = f.validate(dir)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.keys = keys
	return c, nil
}

// fileConfig is the YAML layout of the config file.
type fileConfig struct {
	DeviceID         string       `yaml:"device_id"`
	DeviceIDPrefix   string       `yaml:"device_id_prefix"`
	Broker           *fileBroker  `yaml:"broker"`
	HTTP             *fileHTTP    `yaml:"http"`
	TopicRoot        string       `yaml:"topic_root"`
	Tokens           []string     `yaml:"tokens"`
	RenewBefore      *duration    `yaml:"renew_before"`
	RenewWindow      []float64    `yaml:"renew_window"`
	RenewMinInterval *duration    `yaml:"renew_min_interval"`
	Backoff          *fileBackoff `yaml:"backoff"`
	RequestTimeout   *duration    `yaml:"request_timeout"`
	StateDir         string       `yaml:"state_dir"`
	Socket           *fileSocket  `yaml:"socket"`
	LED              *fileLED     `yaml:"led"`
	LogLevel         string       `yaml:"log_level"`
}

type fileBroker struct {
	URL          urlList   `yaml:"url"`
	Username     string    `yaml:"username"`
	PasswordFile string    `yaml:"password_file"`
	CAFile       string    `yaml:"ca_file"`
	CertFile     string    `yaml:"cert_file"`
	KeyFile      string    `yaml:"key_file"`
	KeepAlive    *duration `yaml:"keepalive"`
}

type fileHTTP struct {
	URL             string      `yaml:"url"`
	BearerTokenFile string      `yaml:"bearer_token_file"`
	Kind            string      `yaml:"kind"`
	Fetch           []fileFetch `yaml:"fetch"`
}

type fileFetch struct {
	Name    string    `yaml:"name"`
	Service string    `yaml:"service"`
	Channel string    `yaml:"channel"`
	UID     string    `yaml:"uid"`
	Account string    `yaml:"account"`
	Role    string    `yaml:"role"`
	Expiry  *duration `yaml:"expiry"`
}

type fileBackoff struct {
	Initial    *duration `yaml:"initial"`
	Max        *duration `yaml:"max"`
	Multiplier *float64  `yaml:"multiplier"`
	Jitter     *float64  `yaml:"jitter"`
}

type fileSocket struct {
	Path       string `yaml:"path"`
	Mode       string `yaml:"mode"`
	Group      string `yaml:"group"`
	AllowUIDs  []int  `yaml:"allow_uids"`
	AllowGIDs  []int  `yaml:"allow_gids"`
	MaxClients *int   `yaml:"max_clients"`
}

type fileLED struct {
	GPIO      string `yaml:"gpio"`
	Sysfs     string `yaml:"sysfs"`
	ActiveLow bool   `yaml:"active_low"`
}

// duration is a time.Duration written as "30s", "1m", "1h30m".
// urlList is broker.url: one URL, a comma-separated string of them, or
// a YAML list.
type urlList []string

func (l *urlList) UnmarshalYAML(n *yaml.Node) error {
	var items []string
	switch n.Kind {
	case yaml.ScalarNode:
		items = strings.Split(n.Value, ",")
	case yaml.SequenceNode:
		for _, it := range n.Content {
			if it.Kind != yaml.ScalarNode {
				return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a broker URL is a string", it.Line)}}
			}
			items = append(items, it.Value)
		}
	default:
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: broker.url is a URL or a list of URLs", n.Line)}}
	}
	*l = (*l)[:0]
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			*l = append(*l, it)
		}
	}
	if len(items) > 0 && len(*l) == 0 && n.Value != "" {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: broker.url lists no URL", n.Line)}}
	}
	return nil
}

type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration such as 30s, 5m or 1h", n.Line, n.Value)}}
	}
	*d = duration(v)
	return nil
}

func (d *duration) get(def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return time.Duration(*d)
}

// errs collects validation errors, each naming its key.
type errs []error

func (e *errs) add(key, format string, a ...any) {
	*e = append(*e, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
}

func (f *fileConfig) validate(dir string) (*Config, error) {
	var e errs
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c := &Config{
		DeviceID:       f.DeviceID,
		DeviceIDPrefix: f.DeviceIDPrefix,
		TopicRoot:      f.TopicRoot,
		Tokens:         f.Tokens,
		StateDir:       abs(f.StateDir),
	}
	switch {
	case f.DeviceID == "":
		e.add("device_id", "missing (a device id, or %q)", AutoDeviceID)
	case f.DeviceID == AutoDeviceID:
	default:
		if err := wire.ValidateDeviceID(f.DeviceID); err != nil {
			e.add("device_id", "%v", err)
		}
		if f.DeviceIDPrefix != "" {
			e.add("device_id_prefix", "only applies to device_id: %s", AutoDeviceID)
		}
	}
	if c.TopicRoot == "" {
		c.TopicRoot = DefaultTopicRoot
	} else if err := wire.ValidateRoot(c.TopicRoot); err != nil {
		e.add("topic_root", "%v", err)
	}
	seen := map[string]bool{}
	for i, n := range f.Tokens {
		if err := wire.ValidateName("token name", n); err != nil {
			e.add(fmt.Sprintf("tokens[%d]", i), "%v", err)
		} else if seen[n] {
			e.add(fmt.Sprintf("tokens[%d]", i), "%q is listed twice", n)
		}
		seen[n] = true
	}
	switch {
	case f.Broker == nil && f.HTTP == nil:
		e.add("broker", "missing (set broker, or http for an HTTP token source)")
	case f.Broker != nil && f.HTTP != nil:
		e.add("http", "set either broker or http, not both")
	case f.Broker != nil:
		c.Broker = f.Broker.validate(&e, abs)
	default:
		c.HTTP = f.HTTP.validate(&e, abs, f.Tokens)
		if c.HTTP != nil && c.HTTP.Kind == HTTPKindTokenService && len(c.Tokens) == 0 {
			for _, x := range c.HTTP.Fetch {
				c.Tokens = append(c.Tokens, x.Name)
			}
		}
	}
	c.RenewBefore = positive(&e, "renew_before", f.RenewBefore, DefaultRenewBefore)
	if c.RenewBefore >= 24*time.Hour {
		e.add("renew_before", "%v is not under the 24 h token lifetime limit", c.RenewBefore)
	}
	c.RenewWindow = RenewWindow{DefaultRenewWindowStart, DefaultRenewWindowEnd}
	switch {
	case f.RenewWindow == nil:
	case len(f.RenewWindow) != 2:
		e.add("renew_window", "want two fractions [start, end] such as [0.6, 0.8], got %d values", len(f.RenewWindow))
	default:
		c.RenewWindow = RenewWindow{f.RenewWindow[0], f.RenewWindow[1]}
		if p := c.RenewWindow.problem(); p != "" {
			e.add("renew_window", "%s", p)
		}
	}
	c.RenewMinInterval = positive(&e, "renew_min_interval", f.RenewMinInterval, DefaultRenewMinInterval)
	c.RequestTimeout = positive(&e, "request_timeout", f.RequestTimeout, DefaultRequestTimeout)
	c.Backoff = f.Backoff.validate(&e)
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	c.Socket = f.Socket.validate(&e, abs)
	if f.LED != nil {
		c.LED = LEDConfig{GPIO: f.LED.GPIO, Sysfs: abs(f.LED.Sysfs), ActiveLow: f.LED.ActiveLow}
		if c.LED.GPIO != "" && c.LED.Sysfs != "" {
			e.add("led", "set either gpio or sysfs, not both")
		}
	}
	switch strings.ToLower(f.LogLevel) {
	case "", "info":
		c.LogLevel = slog.LevelInfo
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		e.add("log_level", "%q is not debug, info, warn or error", f.LogLevel)
	}
	if len(e) > 0 {
		return nil, errors.Join(e...)
	}
	return c, nil
}

func positive(e *errs, key string, d *duration, def time.Duration) time.Duration {
	v := d.get(def)
	if v <= 0 {
		e.add(key, "must be positive, got %v", v)
	}
	return v
}

func (b *fileBroker) validate(e *errs, abs func(string) string) *BrokerConfig {
	c := &BrokerConfig{
		URLs: b.URL, Username: b.Username, PasswordFile: abs(b.PasswordFile),
		CAFile: abs(b.CAFile), CertFile: abs(b.CertFile), KeyFile: abs(b.KeyFile),
	}
	if len(b.URL) == 0 {
		e.add("broker.url", "missing (tcp://host:1883 or ssl://host:8883, or a list of them)")
	} else {
		c.URL = b.URL[0]
	}
	for i, raw := range b.URL {
		key := "broker.url"
		if len(b.URL) > 1 {
			key = fmt.Sprintf("broker.url[%d]", i)
		}
		if u, err := redact.ParseURL(raw); err != nil {
			e.add(key, "%v", err)
		} else if u.Scheme != "tcp" && u.Scheme != "ssl" {
			e.add(key, "scheme %q is not tcp or ssl", u.Scheme)
		} else if u.Port() == "" || u.Hostname() == "" {
			e.add(key, "%s lacks a host or port", redact.URL(raw))
		} else if u.Scheme == "tcp" && (b.CAFile != "" || b.CertFile != "") {
			e.add(key, "TLS files are set but the scheme is tcp (use ssl://)")
		}
	}
	if (b.CertFile == "") != (b.KeyFile == "") {
		e.add("broker.cert_file", "cert_file and key_file go together")
	}
	c.KeepAlive = positive(e, "broker.keepalive", b.KeepAlive, DefaultKeepAlive)
	if c.KeepAlive < time.Second {
		e.add("broker.keepalive", "%v is under 1s", c.KeepAlive)
	}
	return c
}

func (h *fileHTTP) validate(e *errs, abs func(string) string, tokens []string) *HTTPConfig {
	c := &HTTPConfig{URL: strings.TrimSuffix(h.URL, "/"), BearerTokenFile: abs(h.BearerTokenFile), Kind: h.Kind}
	if c.Kind == "" {
		c.Kind = HTTPKindIssuer
	}
	if h.URL == "" {
		e.add("http.url", "missing")
	} else if u, err := redact.ParseURL(h.URL); err != nil {
		e.add("http.url", "%v", err)
	} else if u.Scheme != "https" && u.Scheme != "http" {
		e.add("http.url", "scheme %q is not https", u.Scheme)
	} else if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		e.add("http.url", "plain http is allowed only to a loopback host; use https")
	}
	switch c.Kind {
	case HTTPKindIssuer:
		if len(h.Fetch) > 0 {
			e.add("http.fetch", "only applies to kind %s", HTTPKindTokenService)
		}
	case HTTPKindTokenService:
		if len(h.Fetch) == 0 {
			e.add("http.fetch", "missing: say which tokens to fetch from the %s", HTTPKindTokenService)
		}
		names := map[string]bool{}
		for i, f := range h.Fetch {
			c.Fetch = append(c.Fetch, f.validate(e, fmt.Sprintf("http.fetch[%d]", i)))
			if names[f.Name] {
				e.add(fmt.Sprintf("http.fetch[%d].name", i), "%q is listed twice", f.Name)
			}
			names[f.Name] = true
		}
		for i, n := range tokens {
			if !names[n] {
				e.add(fmt.Sprintf("tokens[%d]", i), "%q is not in http.fetch", n)
			}
		}
	default:
		e.add("http.kind", "%q is not %s or %s", h.Kind, HTTPKindIssuer, HTTPKindTokenService)
	}
	return c
}

func (f fileFetch) validate(e *errs, key string) HTTPFetch {
	c := HTTPFetch{Name: f.Name, Service: f.Service, Channel: f.Channel, UID: f.UID, Account: f.Account, Role: f.Role}
	if err := wire.ValidateName("token name", f.Name); err != nil {
		e.add(key+".name", "%v", err)
	}
	c.Expiry = positive(e, key+".expiry", f.Expiry, DefaultHTTPExpiry)
	if c.Expiry > accesstoken.MaxExpire*time.Second || c.Expiry%time.Second != 0 {
		e.add(key+".expiry", "%v is not whole seconds up to 24h", c.Expiry)
	}
	switch f.Service {
	case "rtc":
		if err := accesstoken.ValidateChannel(f.Channel); err != nil {
			e.add(key+".channel", "%v", err)
		}
		if (f.UID == "") == (f.Account == "") {
			e.add(key+".uid", "set exactly one of uid and account")
		} else if f.UID != "" {
			if _, err := strconv.ParseUint(f.UID, 10, 32); err != nil {
				e.add(key+".uid", "%q is not a 32-bit unsigned number", f.UID)
			}
		}
		if c.Role == "" {
			c.Role = "publisher"
		} else if _, err := accesstoken.ParseRole(c.Role); err != nil {
			e.add(key+".role", "%v", err)
		}
	case "rtm":
		if f.UID == "" {
			e.add(key+".uid", "missing: the RTM user id")
		}
		if f.Channel != "" || f.Account != "" || f.Role != "" {
			e.add(key, "an rtm token takes only uid (and expiry)")
		}
	default:
		e.add(key+".service", "%q is not rtc or rtm", f.Service)
	}
	return c
}

func (b *fileBackoff) validate(e *errs) BackoffConfig {
	if b == nil {
		b = &fileBackoff{}
	}
	c := BackoffConfig{
		Initial: positive(e, "backoff.initial", b.Initial, DefaultBackoffInitial),
		Max:     positive(e, "backoff.max", b.Max, DefaultBackoffMax),
	}
	c.Multiplier, c.Jitter = DefaultBackoffMultiplier, DefaultBackoffJitter
	if b.Multiplier != nil {
		c.Multiplier = *b.Multiplier
	}
	if b.Jitter != nil {
		c.Jitter = *b.Jitter
	}
	if c.Max < c.Initial {
		e.add("backoff.max", "%v is less than backoff.initial %v", c.Max, c.Initial)
	}
	if c.Multiplier < 1 || c.Multiplier > 10 {
		e.add("backoff.multiplier", "%v is not between 1 and 10", c.Multiplier)
	}
	if c.Jitter < 0 || c.Jitter >= 1 {
		e.add("backoff.jitter", "%v is not in [0, 1)", c.Jitter)
	}
	if c.Jitter == 0 { // jitter: 0 in the file is "none", not "not set"
		c.Jitter = NoJitter
	}
	return c
}

func (s *fileSocket) validate(e *errs, abs func(string) string) SocketConfig {
	if s == nil {
		s = &fileSocket{}
	}
	c := SocketConfig{Path: abs(s.Path), Group: s.Group, AllowUIDs: s.AllowUIDs, AllowGIDs: s.AllowGIDs,
		Mode: DefaultSocketMode, MaxClients: DefaultMaxClients}
	if c.Path == "" {
		c.Path = DefaultSocketPath
	}
	if s.Mode != "" {
		m, err := strconv.ParseUint(s.Mode, 8, 32)
		if err != nil || m > 0o777 {
			e.add("socket.mode", "%q is not an octal file mode such as \"0660\"", s.Mode)
		}
		c.Mode = os.FileMode(m)
	}
	if s.MaxClients != nil {
		c.MaxClients = *s.MaxClients
		if c.MaxClients < 1 {
			e.add("socket.max_clients", "must be at least 1, got %d", c.MaxClients)
		}
	}
	for i, u := range s.AllowUIDs {
		if u < 0 {
			e.add(fmt.Sprintf("socket.allow_uids[%d]", i), "%d is negative", u)
		}
	}
	for i, g := range s.AllowGIDs {
		if g < 0 {
			e.add(fmt.Sprintf("socket.allow_gids[%d]", i), "%d is negative", g)
		}
	}
	return c
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
