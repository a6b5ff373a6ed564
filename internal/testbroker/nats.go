package testbroker

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"agoratokens/internal/testlog"
)

// NATSOptions configures a test NATS cluster: nats-server processes
// with JetStream and an MQTT listener each, on free loopback ports.
type NATSOptions struct {
	// Nodes is the cluster's size (default 1: a lone server, no
	// cluster block).
	Nodes int
	// AuthFile, when set, is included by every node's config (an
	// `authorization { users = [...] }` fragment such as the issuer's
	// nats-auth.conf); else Auth, the fragment's text, is written to
	// one. With neither the servers take anyone.
	AuthFile string
	Auth     string
	// Shipped, when set, is a node config such as configs/nats/node.conf
	// that every node runs, told apart by its environment (NATS_NODE,
	// NATS_PORT, NATS_MQTT_PORT, NATS_CLUSTER_PORT, NATS_STORE,
	// NATS_PID_FILE); its
	// routes to 127.0.0.1:6222-6224 are moved to free ports, and the
	// auth fragment is copied beside it as nats-auth.conf.
	Shipped string
	// Quiet leaves out nats-server's debug log (-D), for benchmarks.
	Quiet bool
}

// NATSCluster is a running test cluster; t.Cleanup stops it.
type NATSCluster struct {
	Nodes []*NATSNode
	// AuthFile is the fragment every node includes ("" when none).
	AuthFile string

	mu    sync.Mutex
	probe *ClientOptions // the login WaitMQTT used: Restart waits with it
}

// NATSNode is one nats-server of a cluster.
type NATSNode struct {
	// Name is the node's server_name (n1, n2, …).
	Name string
	// ClientURL is "nats://127.0.0.1:PORT", MQTTURL "tcp://127.0.0.1:PORT"
	// (its MQTT listener), MQTTAddr its host:port.
	ClientURL, MQTTURL, MQTTAddr string
	// Dir holds its config and JetStream store; ConfigFile is its config.
	Dir, ConfigFile string
	env             []string // the environment a Shipped config reads
	quiet           bool

	t       testing.TB
	log     *testlog.Buffer
	cluster *NATSCluster

	proc process
}

// StartNATS starts a NATS cluster and waits until every node is ready
// and, for a cluster, JetStream has elected its metadata leader (MQTT
// needs JetStream). nats-server (Debian's package) must be installed.
func StartNATS(t testing.TB, opts NATSOptions) *NATSCluster {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("nats-server is not installed (Debian's nats-server package; scripts/test-deps.sh installs it): %v", err)
	}
	n := max(opts.Nodes, 1)
	dir := t.TempDir()
	c := &NATSCluster{AuthFile: opts.AuthFile}
	if c.AuthFile == "" && opts.Auth != "" {
		c.AuthFile = filepath.Join(dir, "auth.conf")
		if err := os.WriteFile(c.AuthFile, []byte(opts.Auth), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	routes := make([]int, n)
	for i := range n {
		routes[i] = FreePort(t)
	}
	for i := range n {
		nd := &NATSNode{Name: fmt.Sprintf("n%d", i+1), Dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			t: t, log: &testlog.Buffer{}, cluster: c, quiet: opts.Quiet}
		mqttPort := FreePort(t)
		nd.ClientURL = fmt.Sprintf("nats://127.0.0.1:%d", FreePort(t))
		nd.MQTTAddr = fmt.Sprintf("127.0.0.1:%d", mqttPort)
		nd.MQTTURL = "tcp://" + nd.MQTTAddr
		if err := os.MkdirAll(nd.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %s\nlisten: %s\n", nd.Name, strings.TrimPrefix(nd.ClientURL, "nats://"))
		mqttExtra := ""
		if n > 1 {
			// As configs/nats/node.conf: the MQTT streams on every node
			// (nats-server's default would be one replica per listed
			// route, two here: a quorum lost with one node), each QoS 1
			// subscription's consumer on one node, in memory.
			mqttExtra = ", stream_replicas: 3, consumer_replicas: 1, consumer_memory_storage: true"
		}
		fmt.Fprintf(&b, "jetstream { store_dir: %q }\nmqtt { listen: %q%s }\n", filepath.Join(nd.Dir, "js"), nd.MQTTAddr, mqttExtra)
		if n > 1 {
			var rs []string
			for j, p := range routes {
				if j != i {
					rs = append(rs, fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", p)))
				}
			}
			fmt.Fprintf(&b, "cluster { name: agora-test, listen: \"127.0.0.1:%d\", routes: [%s] }\n", routes[i], strings.Join(rs, ", "))
		}
		if c.AuthFile != "" {
			// nats-server resolves an include against the config's
			// directory, even an absolute path.
			rel, err := filepath.Rel(nd.Dir, c.AuthFile)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "include %q\n", rel)
		}
		nd.ConfigFile = filepath.Join(nd.Dir, "nats.conf")
		if err := os.WriteFile(nd.ConfigFile, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		if opts.Shipped != "" {
			nd.ConfigFile = filepath.Join(dir, "node.conf")
			nd.env = []string{"NATS_NODE=" + nd.Name, "NATS_PORT=" + strings.TrimPrefix(nd.ClientURL, "nats://127.0.0.1:"),
				fmt.Sprintf("NATS_MQTT_PORT=%d", mqttPort), fmt.Sprintf("NATS_CLUSTER_PORT=%d", routes[i]),
				"NATS_STORE=" + filepath.Join(nd.Dir, "js"), "NATS_PID_FILE=" + filepath.Join(nd.Dir, "pid")}
		}
		c.Nodes = append(c.Nodes, nd)
	}
	if opts.Shipped != "" {
		writeShipped(t, opts.Shipped, filepath.Join(dir, "node.conf"), c.AuthFile, routes)
	}
	t.Cleanup(func() {
		for _, nd := range c.Nodes {
			nd.Stop()
			if t.Failed() {
				t.Logf("nats-server %s log (tail):\n%s", nd.Name, tail(nd.Log(), 8000))
			}
		}
	})
	// The nodes start together: each waits for the others' routes.
	errs := make(chan error, n)
	for _, nd := range c.Nodes {
		go func() { errs <- nd.start(bin) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("start nats-server: %v", err)
		}
	}
	if n > 1 {
		c.WaitJetStream()
	}
	if c.AuthFile == "" {
		c.WaitMQTT(ClientOptions{})
	}
	return c
}

// WaitMQTT waits until every node takes an MQTT connection with o's
// login. The first MQTT connection of a cluster creates JetStream's MQTT
// streams, which can take longer than nats-server's own 4 s request
// timeout on a loaded machine: until then connections are refused. A
// cluster with an AuthFile needs a caller's login for this.
func (c *NATSCluster) WaitMQTT(o ClientOptions) {
	c.Nodes[0].t.Helper()
	c.mu.Lock()
	c.probe = &o
	c.mu.Unlock()
	for _, nd := range c.Nodes {
		nd.waitMQTT(o)
	}
}

func (nd *NATSNode) waitMQTT(o ClientOptions) {
	t := nd.t
	t.Helper()
	deadline := time.Now().Add(4 * startTimeout)
	wait := 50 * time.Millisecond
	for {
		cl, err := TryConnect(t, nd.MQTTURL, o)
		if err == nil {
			cl.Disconnect(0)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s takes no MQTT connection: %v\nlog:\n%s", nd.Name, err, tail(nd.Log(), 4000))
		}
		time.Sleep(wait) // a retry backoff, not a wait for a condition
		wait = min(2*wait, time.Second)
	}
}

// WaitJetStream waits until some node's log says JetStream's cluster has
// a metadata leader.
func (c *NATSCluster) WaitJetStream() {
	c.Nodes[0].t.Helper()
	deadline := time.Now().Add(3 * startTimeout)
	for _, nd := range c.Nodes {
		if nd.log.Wait(time.Until(deadline), func(s string) bool {
			return strings.Contains(s, "new metadata leader") || strings.Contains(s, "JetStream cluster new metadata leader") ||
				strings.Contains(s, "Self is new JetStream cluster metadata leader")
		}) {
			return
		}
	}
	c.Nodes[0].t.Fatalf("no JetStream metadata leader in the cluster's logs")
}

// MQTTURLs are the nodes' MQTT listeners, ClientURLs their NATS ones.
func (c *NATSCluster) MQTTURLs() []string {
	var out []string
	for _, nd := range c.Nodes {
		out = append(out, nd.MQTTURL)
	}
	return out
}

// ClientURLs are the nodes' NATS client URLs.
func (c *NATSCluster) ClientURLs() []string {
	var out []string
	for _, nd := range c.Nodes {
		out = append(out, nd.ClientURL)
	}
	return out
}

func (nd *NATSNode) start(bin string) error {
	before := strings.Count(nd.log.String(), "Server is ready")
	args := []string{"-c", nd.ConfigFile, "-D"}
	if nd.quiet {
		args = args[:2]
	}
	cmd := exec.Command(bin, args...)
	if nd.env != nil {
		cmd.Env = append(os.Environ(), nd.env...)
	}
	out, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = nd.log
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(nd.log, sc.Text())
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(done)
		// Wakes a start waiting for the ready line.
		fmt.Fprintf(nd.log, "(test harness: nats-server %s exited: %v)\n", nd.Name, cmd.ProcessState)
	}()
	nd.proc.set(cmd, done)
	ready := nd.log.Wait(startTimeout, func(s string) bool {
		return strings.Count(s, "Server is ready") > before || isClosed(done)
	})
	if !ready || isClosed(done) {
		return fmt.Errorf("%s did not get ready within %v\nlog:\n%s", nd.Name, startTimeout, tail(nd.Log(), 4000))
	}
	// The log line comes once the listeners are open; confirm by dialing.
	if err := waitDial(nd.MQTTAddr, startTimeout); err != nil {
		return err
	}
	return waitDial(strings.TrimPrefix(nd.ClientURL, "nats://"), startTimeout)
}

// writeShipped writes the shipped node config to path with its routes on
// the test's ports, and the auth fragment beside it.
func writeShipped(t testing.TB, shipped, path, auth string, routes []int) {
	t.Helper()
	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatalf("shipped NATS config: %v", err)
	}
	text := string(b)
	for i, p := range routes {
		old := fmt.Sprintf("nats-route://127.0.0.1:%d", 6222+i)
		if !strings.Contains(text, old) {
			t.Fatalf("%s has no route %s", shipped, old)
		}
		text = strings.ReplaceAll(text, old, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	a := []byte("")
	if auth != "" {
		if a, err = os.ReadFile(auth); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "nats-auth.conf"), a, 0o600); err != nil {
		t.Fatal(err)
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Stop kills the node (SIGKILL, as a crash) and waits for it to exit.
// Stopping a stopped node does nothing.
func (nd *NATSNode) Stop() { nd.proc.stop() }

// Restart stops the node (if running) and starts it again with the same
// ports, config and JetStream store, and waits until it takes MQTT
// connections (with the login of the last WaitMQTT).
func (nd *NATSNode) Restart() {
	nd.t.Helper()
	if err := nd.proc.restart(nd.t, "nats-server", nd.start); err != nil {
		nd.t.Fatalf("restart nats-server %s: %v", nd.Name, err)
	}
	nd.cluster.mu.Lock()
	probe := nd.cluster.probe
	nd.cluster.mu.Unlock()
	if probe != nil {
		nd.waitMQTT(*probe)
	}
}

// Reload makes the node re-read its config (SIGHUP, what
// `nats-server --signal reload` sends) and waits until it says so.
func (nd *NATSNode) Reload() {
	nd.t.Helper()
	if err := nd.proc.reload(nd.log, "Reloaded server configuration"); err != nil {
		nd.t.Fatalf("reload nats-server %s: %v\nlog:\n%s", nd.Name, err, tail(nd.Log(), 4000))
	}
}

// WaitLog waits until the node's log contains s.
func (nd *NATSNode) WaitLog(s string, timeout time.Duration) {
	nd.t.Helper()
	if !nd.log.Wait(timeout, func(l string) bool { return strings.Contains(l, s) }) {
		nd.t.Fatalf("nats-server %s log has no %q after %v\nlog:\n%s", nd.Name, s, timeout, tail(nd.Log(), 4000))
	}
}

// Log returns everything the node logged so far (across restarts).
func (nd *NATSNode) Log() string { return nd.log.String() }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// ProcessCPU is the user+system CPU time a running process has used so
// far (Linux), for benchmarks that time processes they start themselves.
func ProcessCPU(pid int) (time.Duration, error) { return procCPU(pid) }
