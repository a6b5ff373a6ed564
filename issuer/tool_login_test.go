package issuer

import (
	"path/filepath"
	"strings"
	"testing"
)

// The operator commands log in with broker.tool_username when it is set
// (a broker that makes the user name the client id would otherwise close
// the running issuer's connection), and with the issuer's login when not.
func TestToolOptionsLogin(t *testing.T) {
	const broker = `broker: {url: "tcp://127.0.0.1:1883", username: agora-issuer, password_file: broker.password`
	for _, tc := range []struct {
		name, broker, user, password string
	}{
		{"issuer login", broker + "}", "agora-issuer", issuerPass},
		{"tool login", broker + ", tool_username: agora-issuer-ops, tool_password_file: tool.password}", "agora-issuer-ops", "tool-secret-0123456789abcdef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := writeSetup(t, tc.broker, "")
			writeFileTB(t, filepath.Join(s.dir, "tool.password"), "tool-secret-0123456789abcdef\n", 0o600)
			cfg, err := LoadConfig(s.config)
			if err != nil {
				t.Fatal(err)
			}
			o, err := ToolOptions(cfg, "fleet-test")
			if err != nil {
				t.Fatal(err)
			}
			if o.Username != tc.user || o.Password != tc.password {
				t.Fatalf("tool logs in as %q (password right: %v), want %q", o.Username, o.Password == tc.password, tc.user)
			}
		})
	}
	s := writeSetup(t, broker+", tool_password_file: tool.password}", "")
	writeFileTB(t, filepath.Join(s.dir, "tool.password"), "x\n", 0o600)
	if _, err := LoadConfig(s.config); err == nil || !strings.Contains(err.Error(), "set without broker.tool_username") || !strings.Contains(err.Error(), "broker.tool_password_file") {
		t.Fatalf("a tool password without a tool user: %v", err)
	}
}

// On NATS the operator commands reach the fleet state over the nodes'
// MQTT listeners (mqtt_urls, else agent_urls) as the issuer's NATS user,
// and say what is missing when they cannot.
func TestToolOptionsNATS(t *testing.T) {
	const nats = `broker: {nats: {servers: ["nats://127.0.0.1:4222"], user: agora-issuer, password_file: broker.password`
	for _, tc := range []struct {
		name, broker string
		urls         []string
		err          string
	}{
		{"agent urls", nats + `, agent_urls: ["tcp://127.0.0.1:1883", "tcp://127.0.0.1:1884"]}}`, []string{"tcp://127.0.0.1:1883", "tcp://127.0.0.1:1884"}, ""},
		{"mqtt urls first", nats + `, agent_urls: ["tcp://10.0.0.1:1883"], mqtt_urls: ["tcp://127.0.0.1:1885"]}}`, []string{"tcp://127.0.0.1:1885"}, ""},
		{"none", nats + `}}`, nil, "set broker.nats.mqtt_urls (or agent_urls)"},
		{"credentials file", `broker: {nats: {servers: ["nats://127.0.0.1:4222"], credentials_file: issuer.creds, agent_urls: ["tcp://127.0.0.1:1883"]}}`, nil, "cannot log in with a credentials file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := writeSetup(t, tc.broker, "")
			writeFileTB(t, filepath.Join(s.dir, "issuer.creds"), "creds\n", 0o600)
			cfg, err := LoadConfig(s.config)
			if err != nil {
				t.Fatal(err)
			}
			o, err := ToolOptions(cfg, "fleet-test")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, u := range o.Servers {
				got = append(got, u.String())
			}
			if strings.Join(got, ",") != strings.Join(tc.urls, ",") || o.Username != "agora-issuer" || o.Password != issuerPass {
				t.Fatalf("servers %v user %q (password right: %v), want %v as agora-issuer", got, o.Username, o.Password == issuerPass, tc.urls)
			}
		})
	}
}
