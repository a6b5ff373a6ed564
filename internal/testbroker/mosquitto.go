// Package testbroker starts real MQTT brokers for tests: the mosquitto
// binary on a free loopback port with its own config, and the project's
// embedded broker in-process. Tests talk to them with real clients, so the
// ACLs, password checks, retained messages and last wills under test are
// the brokers' own.
package testbroker

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"agoratokens/internal/testlog"
)

// startTimeout bounds how long a broker may take to start listening.
const startTimeout = 15 * time.Second

// MosquittoOptions configures a test mosquitto.
type MosquittoOptions struct {
	// Users maps user names to passwords. When set, a password file is
	// built with mosquitto_passwd and anonymous clients are refused.
	Users map[string]string
	// ACLFile is the path of an ACL file to use as is.
	ACLFile string
	// ACL is the content of an ACL file (ignored when ACLFile is set).
	ACL string
	// Persistence keeps retained messages and sessions in the broker's
	// temp dir across Restart.
	Persistence bool
	// ExtraConfig is appended to the generated mosquitto.conf.
	ExtraConfig string
	// Config, when set, replaces the generated mosquitto.conf (Users,
	// ACL and ExtraConfig still write their files). "{{PORT}}" and
	// "{{DIR}}" in it become the port and the broker's temp dir. Its log
	// settings must log to stderr at notice level or more.
	Config string
}

// Mosquitto is a running mosquitto started by a test.
type Mosquitto struct {
	// URL is the broker's address for paho, "tcp://127.0.0.1:PORT".
	URL string
	// Addr is "127.0.0.1:PORT".
	Addr string
	// Dir holds the broker's config, password, ACL and persistence files.
	Dir string
	// ConfigFile is the generated mosquitto.conf.
	ConfigFile string

	t   testing.TB
	log *testlog.Buffer

	proc process
}

// StartMosquitto runs mosquitto on a free loopback port and waits until it
// accepts connections. The test fails if mosquitto is not installed or
// does not start; t.Cleanup stops it. Its log is printed if the test
// fails.
func StartMosquitto(t testing.TB, opts MosquittoOptions) *Mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		t.Fatalf("mosquitto is not installed (install Debian's mosquitto package, e.g. make test-deps): %v", err)
	}
	dir := t.TempDir()
	port := FreePort(t)
	m := &Mosquitto{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Dir:  dir,
		t:    t,
		log:  &testlog.Buffer{},
	}
	m.URL = "tcp://" + m.Addr
	conf, err := m.writeConfig(port, opts)
	if err != nil {
		t.Fatalf("mosquitto setup: %v", err)
	}
	m.ConfigFile = conf
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.Log())
		}
	})
	if err := m.start(bin); err != nil {
		t.Fatalf("start mosquitto: %v\nlog:\n%s", err, m.Log())
	}
	return m
}

// writeConfig writes mosquitto.conf and the files it names.
func (m *Mosquitto) writeConfig(port int, opts MosquittoOptions) (string, error) {
	var c strings.Builder
	fmt.Fprintf(&c, "listener %d 127.0.0.1\n", port)
	c.WriteString("log_dest stderr\nlog_type all\nconnection_messages true\n")
	// As configs/mosquitto/mosquitto.conf sets it: without it Nagle holds
	// a small reply until the peer's delayed ACK (~40 ms on Linux), and
	// request/reply timings in tests are not the deployment's.
	c.WriteString("set_tcp_nodelay true\n")
	if u, err := user.Current(); err == nil && u.Uid == "0" {
		// As root mosquitto drops to the "mosquitto" user, which could
		// not read files in the test's temp dir.
		c.WriteString("user root\n")
	}
	if opts.Persistence {
		fmt.Fprintf(&c, "persistence true\npersistence_location %s/\n", m.Dir)
	} else {
		c.WriteString("persistence false\n")
	}
	if len(opts.Users) > 0 {
		pw := filepath.Join(m.Dir, "passwd")
		if err := writePasswordFile(pw, opts.Users); err != nil {
			return "", err
		}
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", pw)
	} else {
		c.WriteString("allow_anonymous true\n")
	}
	acl := opts.ACLFile
	if acl == "" && opts.ACL != "" {
		acl = filepath.Join(m.Dir, "acl")
		if err := os.WriteFile(acl, []byte(opts.ACL), 0o600); err != nil {
			return "", err
		}
	}
	if acl != "" {
		fmt.Fprintf(&c, "acl_file %s\n", acl)
	}
	if opts.ExtraConfig != "" {
		c.WriteString(opts.ExtraConfig + "\n")
	}
	text := c.String()
	if opts.Config != "" {
		text = strings.NewReplacer("{{PORT}}", strconv.Itoa(port), "{{DIR}}", m.Dir).Replace(opts.Config)
	}
	conf := filepath.Join(m.Dir, "mosquitto.conf")
	return conf, os.WriteFile(conf, []byte(text), 0o600)
}

// writePasswordFile builds a mosquitto password file with mosquitto_passwd.
func writePasswordFile(path string, users map[string]string) error {
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		return fmt.Errorf("mosquitto_passwd is not installed (Debian's mosquitto package): %w", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return err
	}
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out, err := exec.Command(bin, "-b", path, n, users[n]).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mosquitto_passwd for user %q: %w: %s", n, err, out)
		}
	}
	return nil
}

// start runs the process and waits for its "running" log line.
func (m *Mosquitto) start(bin string) error {
	cmd := exec.Command(bin, "-c", m.ConfigFile)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = m.log
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(m.log, line)
			if !signalled && strings.Contains(line, " running") {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(done)
	}()
	m.proc.set(cmd, done)

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-ready:
	case <-done:
		return fmt.Errorf("mosquitto exited during startup: %v", cmd.ProcessState)
	case <-timer.C:
		return fmt.Errorf("mosquitto did not report running within %v", startTimeout)
	}
	// The log line comes after the listener is open; confirm by dialing.
	return waitDial(m.Addr, startTimeout)
}

// Stop kills the broker and waits for it to exit. Stopping a stopped
// broker does nothing.
func (m *Mosquitto) Stop() { m.proc.stop() }

// Restart stops the broker (if running) and starts it again on the same
// port with the same files, as a broker outage would.
func (m *Mosquitto) Restart() {
	m.t.Helper()
	if err := m.proc.restart(m.t, "mosquitto", m.start); err != nil {
		m.t.Fatalf("restart mosquitto: %v\nlog:\n%s", err, m.Log())
	}
}

// Reload sends SIGHUP so mosquitto re-reads its password and ACL files,
// and waits until it logs "Reloading config.".
func (m *Mosquitto) Reload() {
	m.t.Helper()
	if err := m.proc.reload(m.log, "eloading config"); err != nil {
		m.t.Fatalf("reload mosquitto: %v\nlog:\n%s", err, m.Log())
	}
}

// Log returns everything mosquitto logged so far.
func (m *Mosquitto) Log() string { return m.log.String() }

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitDial dials addr with a short backoff until it answers or the
// timeout passes.
func waitDial(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not accept connections after %v: %w", addr, timeout, err)
		}
		time.Sleep(wait) // a retry backoff, not a wait for a condition
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// WaitLog waits until mosquitto's log contains s, failing the test after
// the timeout.
func (m *Mosquitto) WaitLog(s string, timeout time.Duration) {
	m.t.Helper()
	if !m.log.Wait(timeout, func(log string) bool { return strings.Contains(log, s) }) {
		m.t.Fatalf("mosquitto log has no %q after %v\nlog:\n%s", s, timeout, m.Log())
	}
}

// WaitLogCount waits until the log holds s at least n times and
// returns how many times it does. mosquitto logs a connection before it
// answers the client, but the log reaches the test through a pipe: a
// client may be connected before its line is read.
func (m *Mosquitto) WaitLogCount(s string, n int, timeout time.Duration) int {
	m.log.Wait(timeout, func(log string) bool { return strings.Count(log, s) >= n })
	return strings.Count(m.log.String(), s)
}

// StartShippedMosquitto runs the shipped configs/mosquitto/mosquitto.conf
// (configs is that directory) on a free loopback port, with passwd as its
// password file and acl as its ACL, no persistence, logging to stderr;
// as root it stays root (it would drop to a user that cannot read the
// test's files).
func StartShippedMosquitto(t testing.TB, configs, passwd, acl string) *Mosquitto {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(configs, "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	repl := []string{
		"listener 1883 127.0.0.1", "listener {{PORT}} 127.0.0.1",
		"/etc/mosquitto/agora/passwd", passwd,
		"/etc/mosquitto/agora/acl", acl,
		"persistence true", "persistence false",
		"/var/lib/mosquitto/", "{{DIR}}/",
		// StartMosquitto waits for the "running" line, an information one.
		"log_dest syslog", "log_dest stderr\nlog_type information",
	}
	for i := 0; i < len(repl); i += 2 {
		if !strings.Contains(conf, repl[i]) {
			t.Fatalf("shipped mosquitto.conf lacks %q", repl[i])
		}
	}
	conf = strings.NewReplacer(repl...).Replace(conf)
	if os.Geteuid() == 0 {
		conf += "\nuser root\n"
	}
	return StartMosquitto(t, MosquittoOptions{Config: conf})
}
