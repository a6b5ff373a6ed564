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
