package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"agoratokens/agent"
	"agoratokens/internal/testbroker"
	"agoratokens/issuer/broker"
	"agoratokens/issuer/devices"
)

// writeIssuerConfig writes a minimal issuer config with an embedded
// broker whose credentials file is relative to the config's directory.
func writeIssuerConfig(t *testing.T, listen string) (path, creds string) {
	t.Helper()
	dir := t.TempDir()
	path = filepath.Join(dir, "issuer.yaml")
	conf := `app_id: 0123456789abcdef0123456789abcdef
certificates: [{id: primary, file: certificate}]
broker:
  embedded:
    listen: ` + listen + `
    credentials_file: devices.yaml
topic_root: fleet/v1
policy_file: policy.yaml
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, filepath.Join(dir, "devices.yaml")
}

func runDev(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = runDevice(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestDeviceAddPrintsSecretOnce(t *testing.T) {
	conf, creds := writeIssuerConfig(t, "127.0.0.1:1883")
	code, out, errOut := runDev(t, "add", "dev-1", "--config", conf)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	secret := strings.TrimSpace(out)
	f, err := devices.Load(creds)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Check("dev-1", secret) {
		t.Fatalf("printed secret %q does not check against the credentials file", secret)
	}
	raw, _ := os.ReadFile(creds)
	if strings.Contains(string(raw), secret) {
		t.Fatal("credentials file holds the secret")
	}
	// Flags first works too; a duplicate is refused and names rotate.
	code, _, errOut = runDev(t, "add", "--config", conf, "dev-1")
	if code != 1 || !strings.Contains(errOut, "already registered") || !strings.Contains(errOut, "rotate") {
		t.Fatalf("duplicate add: exit %d, %s", code, errOut)
	}
}

func TestDeviceAddOutLocalConnects(t *testing.T) {
	conf, creds := writeIssuerConfig(t, "127.0.0.1:0")
	out := filepath.Join(t.TempDir(), "dev-7")
	code, stdout, errOut := runDev(t, "add", "dev-7", "--config", conf, "--out", out, "--local")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pw, err := os.ReadFile(filepath.Join(out, "password"))
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(pw))
	if strings.Contains(stdout+errOut, secret) {
		t.Fatal("secret printed although --out was given")
	}
	if st, _ := os.Stat(filepath.Join(out, "password")); st.Mode().Perm() != 0o600 {
		t.Fatalf("password mode %v, want 0600", st.Mode().Perm())
	}
	var ac struct {
		DeviceID string `yaml:"device_id"`
		Broker   struct {
			URL          string `yaml:"url"`
			Username     string `yaml:"username"`
			PasswordFile string `yaml:"password_file"`
		} `yaml:"broker"`
		TopicRoot string `yaml:"topic_root"`
		StateDir  string `yaml:"state_dir"`
		Socket    struct {
			Path string `yaml:"path"`
		} `yaml:"socket"`
		RenewBefore string `yaml:"renew_before"`
	}
	raw, err := os.ReadFile(filepath.Join(out, "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&ac); err != nil {
		t.Fatalf("agent.yaml: %v\n%s", err, raw)
	}
	if ac.DeviceID != "dev-7" || ac.Broker.Username != "dev-7" || ac.Broker.PasswordFile != "password" ||
		ac.TopicRoot != "fleet/v1" || ac.StateDir != "state" || ac.Socket.Path != "agent.sock" || ac.RenewBefore != "30s" {
		t.Fatalf("agent.yaml: %+v\n%s", ac, raw)
	}
	if ac.Broker.URL != "tcp://127.0.0.1:0" {
		t.Fatalf("broker url %q, want the embedded listen address", ac.Broker.URL)
	}

	// The written credentials log in to the embedded broker reading the
	// same credentials file.
	b, err := broker.New(broker.Config{Listen: "127.0.0.1:0", CredentialsFile: creds, TopicRoot: "fleet/v1",
		ServiceUser: "issuer", ServicePassword: "service-password-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Run(ctx)
	select {
	case <-b.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("broker not ready")
	}
	testbroker.Connect(t, "tcp://"+b.Addr(), testbroker.ClientOptions{ClientID: ac.DeviceID, Username: ac.Broker.Username, Password: secret})

	// A device added while the broker runs logs in without a reload.
	out2 := filepath.Join(t.TempDir(), "dev-8")
	if code, _, errOut := runDev(t, "add", "dev-8", "--config", conf, "--out", out2, "--local"); code != 0 {
		t.Fatalf("second add: %s", errOut)
	}
	pw2, _ := os.ReadFile(filepath.Join(out2, "password"))
	testbroker.Connect(t, "tcp://"+b.Addr(), testbroker.ClientOptions{ClientID: "dev-8", Username: "dev-8", Password: strings.TrimSpace(string(pw2))})

	// A second add into the same directory is refused before registering.
	if code, _, errOut := runDev(t, "add", "dev-9", "--config", conf, "--out", out); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("add into a used --out: exit %d %s", code, errOut)
	}
	if f, _ := devices.Load(creds); f.Has("dev-9") {
		t.Fatal("dev-9 registered although its files could not be written")
	}
}

func TestDeviceAddBoardPaths(t *testing.T) {
	conf, _ := writeIssuerConfig(t, "10.0.0.5:8883")
	out := t.TempDir()
	if code, _, errOut := runDev(t, "add", "cam-1", "--config", conf, "--out", out); code != 0 {
		t.Fatal(errOut)
	}
	raw, _ := os.ReadFile(filepath.Join(out, "agent.yaml"))
	for _, want := range []string{`url: "tcp://10.0.0.5:8883"`, `password_file: "/etc/agora-token-agent/password"`,
		`state_dir: "/var/lib/agora-token-agent"`, `path: "/run/agora-token-agent/agent.sock"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("agent.yaml lacks %s:\n%s", want, raw)
		}
	}
	// It loads with the agent's own parser, with the agent's defaults
	// for the state directory and the socket.
	c, err := agent.ParseConfig(bytes.NewReader(raw), "/etc/agora-token-agent")
	if err != nil {
		t.Fatalf("agent.yaml does not load in the agent: %v", err)
	}
	if c.StateDir != agent.DefaultStateDir || c.Socket.Path != agent.DefaultSocketPath || c.TopicRoot != "fleet/v1" {
		t.Fatalf("agent.yaml: state %q socket %q root %q, want the agent's defaults", c.StateDir, c.Socket.Path, c.TopicRoot)
	}
	out2 := t.TempDir()
	if code, _, errOut := runDev(t, "add", "cam-2", "--config", conf, "--out", out2, "--broker-url", "ssl://mqtt.example.com:8883"); code != 0 {
		t.Fatal(errOut)
	}
	raw, _ = os.ReadFile(filepath.Join(out2, "agent.yaml"))
	if !strings.Contains(string(raw), `url: "ssl://mqtt.example.com:8883"`) || !strings.Contains(string(raw), "ca_file") {
		t.Errorf("--broker-url not used:\n%s", raw)
	}
}

func TestDeviceListRotateRemove(t *testing.T) {
	conf, creds := writeIssuerConfig(t, "127.0.0.1:1883")
	for _, d := range []string{"a-1", "b-2"} {
		if code, _, e := runDev(t, "add", d, "--config", conf); code != 0 {
			t.Fatal(e)
		}
	}
	code, out, _ := runDev(t, "list", "--config", conf)
	if code != 0 || !strings.HasPrefix(out, "a-1\t") || !strings.Contains(out, "\nb-2\t") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	code, out, _ = runDev(t, "rotate", "a-1", "--config", conf)
	if code != 0 {
		t.Fatal("rotate failed")
	}
	if f, _ := devices.Load(creds); !f.Check("a-1", strings.TrimSpace(out)) {
		t.Fatal("rotated secret does not check")
	}
	if code, _, e := runDev(t, "remove", "a-1", "--config", conf); code != 0 {
		t.Fatal(e)
	}
	if code, _, e := runDev(t, "remove", "a-1", "--config", conf); code != 1 || !strings.Contains(e, "not registered") {
		t.Fatalf("remove twice: %d %s", code, e)
	}
	if f, _ := devices.Load(creds); f.Has("a-1") || !f.Has("b-2") {
		t.Fatal("remove did not update the file")
	}
}

func TestDeviceUsageErrors(t *testing.T) {
	conf, _ := writeIssuerConfig(t, "127.0.0.1:1883")
	ext := filepath.Join(t.TempDir(), "ext.yaml")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("colour: red\n"), 0o600)
	// A valid issuer config whose broker is external: the device
	// commands read it with the issuer's own parser.
	os.WriteFile(ext, []byte("app_id: 0123456789abcdef0123456789abcdef\ncertificates: [{id: primary, file: certificate}]\n"+
		"broker:\n  url: tcp://broker:1883\npolicy_file: policy.yaml\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", nil, 2, "Usage"},
		{"unknown subcommand", []string{"frob"}, 2, "unknown command"},
		{"no config", []string{"add", "d"}, 2, "--config"},
		{"no name", []string{"add", "--config", conf}, 2, "device name"},
		{"two names", []string{"add", "a", "b", "--config", conf}, 2, "device name"},
		{"bad name", []string{"add", "a/b", "--config", conf}, 1, "device id"},
		{"local without out", []string{"add", "a", "--local", "--config", conf}, 2, "--out"},
		{"missing config", []string{"list", "--config", "/nonexistent/issuer.yaml"}, 1, "read issuer config"},
		{"external broker", []string{"add", "a", "--config", ext}, 1, "credentials_file"},
		{"unknown flag", []string{"add", "a", "--bogus"}, 2, "bogus"},
		{"invalid issuer config", []string{"list", "--config", bad}, 1, `colour (line 1): unknown key "colour"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runDev(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.want)
			}
		})
	}
}

// An operator (root) adding or rotating a device keeps the group and
// mode of the credentials file and of an existing password file, so that
// the service user still reads them. The test runs as root (as make test
// does); group 4 is adm.
func TestDeviceWritesKeepGroupAndMode(t *testing.T) {
	const gid = 4
	conf, creds := writeIssuerConfig(t, "127.0.0.1:1883")
	out := t.TempDir()
	if code, _, e := runDev(t, "add", "dev-1", "--config", conf, "--out", out); code != 0 {
		t.Fatal(e)
	}
	password := filepath.Join(out, "password")
	for _, p := range []string{creds, password} {
		if err := os.Chown(p, 0, gid); err != nil {
			t.Fatalf("chown (the test runs as root): %v", err)
		}
		if err := os.Chmod(p, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, e := runDev(t, "rotate", "dev-1", "--config", conf, "--out", out); code != 0 {
		t.Fatal(e)
	}
	if code, _, e := runDev(t, "add", "dev-2", "--config", conf); code != 0 {
		t.Fatal(e)
	}
	for _, p := range []string{creds, password} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if g := st.Sys().(*syscall.Stat_t).Gid; st.Mode().Perm() != 0o640 || g != gid {
			t.Errorf("%s after rewrite: %v group %d, want 0640 group %d", filepath.Base(p), st.Mode().Perm(), g, gid)
		}
	}
}

// A rotation with --out writes the new password and keeps the agent.yaml
// that add wrote, with its --broker-url, and says "rotated".
func TestDeviceRotateKeepsBrokerURL(t *testing.T) {
	conf, _ := writeIssuerConfig(t, "127.0.0.1:1883")
	out := t.TempDir()
	const url = "ssl://broker.example.net:8883"
	if code, _, e := runDev(t, "add", "dev-1", "--config", conf, "--out", out, "--broker-url", url); code != 0 {
		t.Fatal(e)
	}
	before, err := os.ReadFile(filepath.Join(out, "password"))
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, e := runDev(t, "rotate", "dev-1", "--config", conf, "--out", out)
	if code != 0 {
		t.Fatal(e)
	}
	if !strings.Contains(stdout, "device dev-1 rotated") || strings.Contains(stdout, "registered") {
		t.Errorf("rotate said %q, want it to say rotated", stdout)
	}
	yaml, err := os.ReadFile(filepath.Join(out, "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(yaml), url) {
		t.Errorf("agent.yaml lost --broker-url after rotate:\n%s", yaml)
	}
	after, err := os.ReadFile(filepath.Join(out, "password"))
	if err != nil {
		t.Fatal(err)
	}
	if string(after) == string(before) {
		t.Error("rotate did not write a new password")
	}
}

// An ssl:// broker given with --broker-url is not called the embedded one.
func TestDeviceAgentYAMLTLSComment(t *testing.T) {
	conf, _ := writeIssuerConfig(t, "127.0.0.1:1883")
	out := t.TempDir()
	if code, _, e := runDev(t, "add", "dev-1", "--config", conf, "--out", out, "--broker-url", "ssl://mqtt.example.net:8883"); code != 0 {
		t.Fatal(e)
	}
	yaml, err := os.ReadFile(filepath.Join(out, "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(yaml), "embedded broker") || !strings.Contains(string(yaml), "The broker speaks TLS") {
		t.Errorf("agent.yaml for an external ssl:// broker:\n%s", yaml)
	}
}

// device add warns when no policy rule grants the new device a token.
func TestDeviceAddWarnsWithoutGrant(t *testing.T) {
	conf, _ := writeIssuerConfig(t, "127.0.0.1:1883")
	policy := "rules:\n  - match: \"dev-*\"\n    tokens:\n      video: {service: rtc, channel: \"{device}\", uid: \"{uid}\", role: publisher}\n"
	if err := os.WriteFile(filepath.Join(filepath.Dir(conf), "policy.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, e := runDev(t, "add", "dev-1", "--config", conf); code != 0 || strings.Contains(e, "warning") {
		t.Fatalf("dev-1 is granted: exit %d, stderr %q", code, e)
	}
	code, _, e := runDev(t, "add", "cam-0042", "--config", conf)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	if !strings.Contains(e, "warning: no rule of") || !strings.Contains(e, "cam-0042") {
		t.Errorf("no warning for a device no rule grants: %q", e)
	}
}
