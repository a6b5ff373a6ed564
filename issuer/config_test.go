package issuer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/secretfile"
)

const (
	testAppID = "970ca35de60c44645bbae8a215061b33"
	testCert  = "5cfd2fd1755d40ecb72977518be15d3b"
	testCert2 = "0123456789abcdef0123456789abcdef"
)

const minimalConfig = `
app_id: 970ca35de60c44645bbae8a215061b33
certificates: [{id: primary, file: cert}]
broker: {url: "tcp://127.0.0.1:1883"}
policy_file: policy.yaml
`

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(minimalConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ActiveCertificate != "primary" || cfg.TopicRoot != "agora/v1" || cfg.LogLevel != "info" {
		t.Errorf("defaults: active %q root %q level %q", cfg.ActiveCertificate, cfg.TopicRoot, cfg.LogLevel)
	}
	l := cfg.Limits
	if l.DefaultTTL != time.Hour || l.MaxTTL != 24*time.Hour || l.MaxPayload != 16384 ||
		l.Rate.PerMinute != DefaultRatePerMin || l.Rate.Burst != DefaultRateBurst {
		t.Errorf("limit defaults: %+v", l)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top key", minimalConfig + "colour: red\n", `colour (line 6): unknown key "colour"`},
		{"unknown nested key", strings.Replace(minimalConfig, `url:`, `urll: x, url:`, 1), `broker.urll`},
		{"bad duration", minimalConfig + "limits: {default_ttl: soon}\n", "limits.default_ttl"},
		{"int duration", minimalConfig + "limits: {default_ttl: 3600}\n", "limits.default_ttl"},
		{"ttl over max", minimalConfig + "limits: {default_ttl: 2h, max_ttl: 1h}\n", "limits.default_ttl (line 6): 2h0m0s is not between"},
		{"max over 24h", minimalConfig + "limits: {max_ttl: 25h}\n", "limits.max_ttl"},
		{"max over 24h has its line", minimalConfig + "limits:\n  max_ttl: 48h\n", "limits.max_ttl (line 7): 48h0m0s is not between 1s and 24h0m0s"},
		{"payload", minimalConfig + "limits: {max_payload: 100000}\n", "limits.max_payload"},
		{"no app id", strings.Replace(minimalConfig, "app_id: 970ca35de60c44645bbae8a215061b33", "", 1), "app_id: missing"},
		{"bad app id", strings.Replace(minimalConfig, "970ca35de", "970ca35dx", 1), "app_id (line 2): app id must be 32 hex"},
		{"no certs", strings.Replace(minimalConfig, "certificates: [{id: primary, file: cert}]", "", 1), "certificates: at least one"},
		{"dup cert", strings.Replace(minimalConfig, "[{id: primary, file: cert}]", "[{id: a, file: x}, {id: a, file: y}]", 1), "certificates[1].id"},
		{"active needed", strings.Replace(minimalConfig, "[{id: primary, file: cert}]", "[{id: a, file: x}, {id: b, file: y}]", 1), "active_certificate: missing"},
		{"active unknown", minimalConfig + "active_certificate: nope\n", `active_certificate (line 6): "nope"`},
		{"no broker", strings.Replace(minimalConfig, `broker: {url: "tcp://127.0.0.1:1883"}`, "", 1), "broker: missing"},
		{"both brokers", strings.Replace(minimalConfig, `broker: {url: "tcp://127.0.0.1:1883"}`, `broker: {url: "tcp://h:1", embedded: {credentials_file: d}}`, 1), "not both"},
		{"scheme", strings.Replace(minimalConfig, "tcp://", "http://", 1), `broker.url (line 4): scheme "http"`},
		{"no port", strings.Replace(minimalConfig, ":1883", "", 1), "needs a host and a port"},
		{"password in url", strings.Replace(minimalConfig, "tcp://", "tcp://u:p@", 1), "broker.url (line 4): put the user"},
		{"tls on tcp", strings.Replace(minimalConfig, `url: "tcp://127.0.0.1:1883"`, `url: "tcp://h:1", ca_file: ca`, 1), "need an ssl:// url"},
		{"embedded creds", strings.Replace(minimalConfig, `broker: {url: "tcp://127.0.0.1:1883"}`, `broker: {embedded: {listen: "127.0.0.1:0"}}`, 1), "broker.embedded.credentials_file: missing"},
		{"root", minimalConfig + "topic_root: a/+/b\n", "topic_root"},
		{"group", minimalConfig + "share_group: a/b\n", "share_group"},
		{"no policy", strings.Replace(minimalConfig, "policy_file: policy.yaml", "", 1), "policy_file: missing"},
		{"keys without listen", minimalConfig + "http: {api_keys_file: k}\n", "http.api_keys_file"},
		{"listen", minimalConfig + "listen: nope\n", "listen (line 6):"},
		{"level", minimalConfig + "log_level: loud\n", "log_level"},
		{"empty", "", "file is empty"},
		{"not yaml", "a: [", "not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// writeFile writes a file with a mode, failing the test on error.
func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConfigSecrets(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string // "" means success
	}{
		{"0600", testCert + "\n", 0o600, ""},
		{"0640", "  " + testCert + "  \n", 0o640, ""},
		{"0400", testCert, 0o400, ""},
		{"world readable", testCert, 0o644, "has mode 0644; a secret file must be 0600 or 0640"},
		{"group writable", testCert, 0o660, "has mode 0660"},
		{"not hex", strings.Repeat("z", 32), 0o600, "character 1 is not hex"},
		{"short", "abc", 0o600, "got 3 characters"},
		{"empty", "\n", 0o600, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "cert"), tt.content, tt.mode)
			writeFile(t, filepath.Join(dir, "policy.yaml"), "rules: []\n", 0o644)
			writeFile(t, filepath.Join(dir, "issuer.yaml"), minimalConfig, 0o644)
			cfg, err := LoadConfig(filepath.Join(dir, "issuer.yaml"))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c := cfg.Certs(); len(c) != 1 || c[0].Value.Reveal() != testCert {
					t.Fatalf("certs not read: %d", len(c))
				}
				if cfg.PolicyFile != filepath.Join(dir, "policy.yaml") {
					t.Errorf("policy_file not resolved: %q", cfg.PolicyFile)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "certificates[0].file") {
				t.Fatalf("err = %v, want certificates[0].file … %q", err, tt.want)
			}
			if strings.Contains(err.Error(), strings.TrimSpace(tt.content)) && len(strings.TrimSpace(tt.content)) > 3 {
				t.Fatalf("the error quotes the secret: %v", err)
			}
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := secretfile.NewSecret(testCert)
	for _, out := range []string{s.String(), s.GoString(), s.LogValue().String()} {
		if strings.Contains(out, testCert) {
			t.Fatalf("secret printed: %s", out)
		}
	}
	b, _ := s.MarshalText()
	if strings.Contains(string(b), testCert) {
		t.Fatal("secret marshalled")
	}
}

func TestExampleConfigs(t *testing.T) {
	f, err := os.Open("../configs/issuer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := ParseConfig(f)
	if err != nil {
		t.Fatalf("configs/issuer.yaml: %v", err)
	}
	if cfg.ShareGroup != "issuers" || cfg.Broker.URL == "" {
		t.Errorf("example config parsed as %+v", cfg)
	}
	p, err := LoadPolicy("../configs/policy.yaml", cfg.Limits)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Grants("cam-stolen-1", nil); err == nil {
		t.Error("the example deny list lets a stolen camera in")
	}
}
