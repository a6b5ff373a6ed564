package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"agoratokens/internal/testbroker"
	"agoratokens/internal/testlog"
	"agoratokens/issuer/fleetsim"
)

// stormDevices is the fleet size of the storm benchmark (FLEET_DEVICES,
// default 2000).
func stormDevices(b *testing.B) int {
	n := 2000
	if v := os.Getenv("FLEET_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 3 {
			b.Fatalf("FLEET_DEVICES=%q is not a fleet size", v)
		}
	}
	return n
}

// nodeConf is the node config the NATS storm runs: NATS_NODE_CONF, by
// default the shipped configs/nats/node.conf.
func nodeConf(b *testing.B) string {
	p := os.Getenv("NATS_NODE_CONF")
	if p == "" {
		p = "../configs/nats/node.conf"
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		b.Fatal(err)
	}
	return abs
}

// stormOnConnect is FLEET_REQUESTS: "on-connect" (the default), each
// device asks as soon as it is connected, as an agent does; "at-once",
// every device asks at once when the whole fleet is connected.
func stormOnConnect(b *testing.B) bool {
	switch v := os.Getenv("FLEET_REQUESTS"); v {
	case "", "on-connect":
		return true
	case "at-once":
		return false
	default:
		b.Fatalf("FLEET_REQUESTS=%q: want on-connect or at-once", v)
		return false
	}
}

// selfCPU is the CPU time of this process (the simulators).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// component is one process of a storm whose CPU time is reported.
type component struct {
	name string
	cpu  func() time.Duration
}

// stormResult merges the simulators' results.
type stormResult struct {
	devices, replies, lost, failed, errors int
	retried                                int // devices that connected after a retry
	dropped                                int // connections the broker closed during the run
	connect, total, p50, p99               time.Duration
	cpu                                    map[string]time.Duration // by component name
	failures                               []string                 // the simulators' first warnings
}

// stormRetries is how many times a simulated device whose login or
// subscription failed tries again, with the agent's backoff (1 s,
// doubling: 31 s in all), as a real fleet's agents would; the table
// counts the devices that needed it.
const stormRetries = 5

// storm runs one simulator per broker URL at once, the devices split
// evenly, and reads every component's CPU time before the first
// connection and once every simulator is served (before the fleet
// disconnects: closing sessions is not the storm's cost).
func storm(b *testing.B, urls, prefixes []string, n int, seed []byte, onConnect bool, comps []component) stormResult {
	b.Helper()
	read := func() []time.Duration {
		out := make([]time.Duration, len(comps))
		for i, c := range comps {
			out[i] = c.cpu()
		}
		return out
	}
	var (
		mu      sync.Mutex
		res     = stormResult{cpu: map[string]time.Duration{}}
		lat     []time.Duration
		wg      sync.WaitGroup
		arrived sync.WaitGroup // simulators served (or failed)
		served  = make(chan struct{})
		after   []time.Duration
	)
	warnings := &testlog.Buffer{}
	log := slog.New(slog.NewTextHandler(warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
	arrived.Add(len(urls))
	go func() {
		arrived.Wait()
		after = read()
		close(served)
	}()
	before := read()
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arrive := sync.OnceFunc(arrived.Done)
			defer arrive()
			sim, err := fleetsim.New(fleetsim.Config{BrokerURL: u, Devices: n / len(urls), Prefix: prefixes[i], Seed: seed,
				Timeout: 120 * time.Second, Retries: stormRetries, RequestOnConnect: onConnect, Logger: log.With("broker", u),
				Served: func() { arrive(); <-served }})
			if err != nil {
				b.Error(err)
				return
			}
			r, err := sim.Run(context.Background())
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			res.connect = max(res.connect, r.ConnectTime)
			res.total = max(res.total, r.Total)
			res.replies += r.Replies
			res.devices += r.Devices
			res.lost += r.Lost
			res.failed += r.ConnectFailed
			res.retried += r.Retried
			res.dropped += r.Dropped
			for _, v := range r.Errors {
				res.errors += v
			}
			lat = append(lat, r.Latencies...)
		}()
	}
	wg.Wait()
	<-served
	for i, c := range comps {
		res.cpu[c.name] = after[i] - before[i]
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		res.p50 = lat[len(lat)/2]
		res.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	for _, l := range strings.Split(strings.TrimSpace(warnings.String()), "\n") {
		if l != "" && len(res.failures) < 6 {
			res.failures = append(res.failures, l)
		}
	}
	return res
}

// issuerProc is an agora-token-issuer serve process: each replica is a
// process of its own, as deployed, so that its CPU time is its own.
type issuerProc struct {
	cmd  *exec.Cmd
	log  *testlog.Buffer
	done chan struct{}
	stop func()
}

// startIssuer starts `bin serve --config cfg` and waits until it serves.
func startIssuer(b *testing.B, bin, cfg string) *issuerProc {
	b.Helper()
	p := &issuerProc{log: &testlog.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--config", cfg)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		fmt.Fprintf(p.log, "(benchmark: issuer exited: %v)\n", err)
		close(p.done)
	}()
	p.stop = sync.OnceFunc(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
	})
	b.Cleanup(p.stop)
	if !p.log.Wait(time.Minute, func(s string) bool { return strings.Contains(s, "serving") || strings.Contains(s, "(benchmark:") }) ||
		strings.Contains(p.log.String(), "(benchmark:") {
		b.Fatalf("issuer did not start:\n%s", p.log.String())
	}
	return p
}

func (p *issuerProc) CPU() time.Duration {
	select {
	case <-p.done:
		return 0
	default:
	}
	d, _ := testbroker.ProcessCPU(p.cmd.Process.Pid)
	return d
}

// buildIssuer compiles agora-token-issuer into a temporary directory.
func buildIssuer(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "agora-token-issuer")
	gocmd := os.Getenv("GO")
	if gocmd == "" {
		gocmd = "go"
	}
	cmd := exec.Command(gocmd, "build", "-trimpath", "-o", bin, "agoratokens/cmd/agora-token-issuer")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build agora-token-issuer: %v\n%s", err, out)
	}
	return bin
}

// natsStorm boots the fleet spread over a 3-node NATS cluster running
// the node config (one simulator per node's MQTT listener) with two
// issuer replicas on NATS, then stops the cluster.
func natsStorm(b *testing.B, bin string, n int, seed []byte, onConnect bool, prefixes []string, secrets map[string]string) stormResult {
	e := newNATSEnvSecrets(b, testbroker.NATSOptions{Nodes: 3, Quiet: true, Shipped: nodeConf(b)}, time.Hour, secrets)
	raw, err := os.ReadFile(e.cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	cfg := filepath.Join(e.dir, "issuer-bench.yaml")
	writeFileTB(b, cfg, strings.Replace(string(raw), "log_level: debug", "log_level: info", 1))
	ia, ib := startIssuer(b, bin, cfg), startIssuer(b, bin, cfg)
	var comps []component
	for _, nd := range e.cluster.Nodes {
		comps = append(comps, component{"nats-server " + nd.Name, nd.CPU})
	}
	comps = append(comps, component{"issuer a", ia.CPU}, component{"issuer b", ib.CPU}, component{"simulators", selfCPU})
	logged := make([]int, len(e.cluster.Nodes))
	for i, nd := range e.cluster.Nodes {
		logged[i] = len(nd.Log())
	}
	r := storm(b, e.cluster.MQTTURLs(), prefixes, n, seed, onConnect, comps)
	ia.stop()
	ib.stop()
	for i, nd := range e.cluster.Nodes {
		if l := nd.Log()[logged[i]:]; strings.Contains(l, "[ERR]") {
			r.failures = append(r.failures, fmt.Sprintf("nats-server %s logged %d errors during the storm, the first: %s",
				nd.Name, strings.Count(l, "[ERR]"), firstLine(l, "[ERR]")))
		}
	}
	for _, nd := range e.cluster.Nodes {
		nd.Stop() // its sessions' cleanup must not run into the next storm
	}
	return r
}

// startShippedMosquitto runs mosquitto with the shipped mosquitto.conf
// and ACL (what an operator deploys; its queue limits matter in a storm),
// with passwd as its password file, no persistence, logging to stderr.
func startShippedMosquitto(b *testing.B, passwd string) *testbroker.Mosquitto {
	b.Helper()
	acl, err := filepath.Abs("../configs/mosquitto/acl")
	if err != nil {
		b.Fatal(err)
	}
	return testbroker.StartShippedMosquitto(b, "../configs/mosquitto", passwd, acl)
}

// mosquittoStorm boots the fleet on one mosquitto with one issuer.
func mosquittoStorm(b *testing.B, bin string, n int, seed []byte, onConnect bool) stormResult {
	dir := b.TempDir()
	passwd := filepath.Join(dir, "passwd")
	names := make([]string, 0, n+1)
	for i := range n {
		names = append(names, fleetsim.DeviceName("dev-sim-", i))
	}
	if err := fleetsim.Register(passwd, fleetsim.FormatMosquitto, seed, append(names, "agora-issuer")); err != nil {
		b.Fatal(err)
	}
	m := startShippedMosquitto(b, passwd)
	writeFileTB(b, filepath.Join(dir, "cert"), hexTB(b)+"\n")
	writeFileTB(b, filepath.Join(dir, "issuer.pw"), fleetsim.Secret(seed, "agora-issuer")+"\n")
	writeFileTB(b, filepath.Join(dir, "policy.yaml"), "rules:\n  - match: \"dev-*\"\n    tokens:\n      video: {service: rtc, channel: \"cam-{device}\", uid: \"{uid}\", role: publisher, ttl: 1h}\n")
	cfg := filepath.Join(dir, "issuer.yaml")
	writeFileTB(b, cfg, fmt.Sprintf("app_id: %s\ncertificates: [{id: primary, file: cert}]\nbroker: {url: %q, username: agora-issuer, password_file: issuer.pw}\npolicy_file: policy.yaml\nlog_level: info\n", hexTB(b), m.URL))
	is := startIssuer(b, bin, cfg)
	r := storm(b, []string{m.URL}, []string{"dev-sim-"}, n, seed, onConnect,
		[]component{{"mosquitto", m.CPU}, {"issuer", is.CPU}, {"simulators", selfCPU}})
	is.stop()
	return r
}

// BenchmarkBootStormNATSvsMosquitto: a fleet boots at once, spread over
// the three nodes of a NATS cluster (configs/nats/node.conf, or
// NATS_NODE_CONF) with two issuer replicas on NATS, then the same fleet
// on one mosquitto with one issuer, in one run, each issuer a process of
// its own (`FLEET_DEVICES=10000 go test -run XXX -bench BootStorm
// -benchtime 1x ./e2e/`, or scripts/bench-storm-nats.sh). Prints one
// table: total time, p50/p99 from request to token, lost, failed and CPU
// seconds per component.
func BenchmarkBootStormNATSvsMosquitto(b *testing.B) {
	n := stormDevices(b) / 3 * 3
	onConnect := stormOnConnect(b)
	// This process holds one connection per device; the brokers, which
	// inherit the limit, hold one per device they serve.
	if err := fleetsim.RaiseFileLimit(uint64(n) + 512); err != nil {
		b.Fatal(err)
	}
	bin := buildIssuer(b)
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		b.Fatal(err)
	}
	prefixes := []string{"dev-sim-a", "dev-sim-b", "dev-sim-c"}
	secrets := map[string]string{}
	for _, p := range prefixes {
		for i := range n / 3 {
			name := fleetsim.DeviceName(p, i)
			secrets[name] = fleetsim.Secret(seed, name)
		}
	}
	for b.Loop() {
		load0 := loadAvg()
		nr := natsStorm(b, bin, n, seed, onConnect, prefixes, secrets)
		mr := mosquittoStorm(b, bin, n, seed, onConnect)
		printStorms(os.Stdout, nodeConf(b), onConnect, load0, loadAvg(), nr, mr)
		b.ReportMetric(nr.total.Seconds(), "nats-total-s")
		b.ReportMetric(mr.total.Seconds(), "mosquitto-total-s")
		if nr.lost+nr.failed+nr.errors != 0 || mr.lost+mr.failed+mr.errors != 0 {
			b.Errorf("lost, failed or refused: NATS %d/%d/%d, mosquitto %d/%d/%d",
				nr.lost, nr.failed, nr.errors, mr.lost, mr.failed, mr.errors)
		}
		if nr.dropped+mr.dropped != 0 {
			b.Logf("connections closed by the broker during the storm: NATS %d, mosquitto %d", nr.dropped, mr.dropped)
		}
	}
}

// printStorms writes both storms as one table.
func printStorms(w io.Writer, conf string, onConnect bool, load0, load1 string, nr, mr stormResult) {
	asks := "all at once once the fleet is connected"
	if onConnect {
		asks = "each as soon as it is connected"
	}
	fmt.Fprintf(w, "\nboot storm, %d devices asking %s; NATS: 3 nodes (%s), 2 issuers, one simulator per node; mosquitto: 1 broker, 1 issuer\n",
		nr.devices, asks, filepath.Base(conf))
	fmt.Fprintf(w, "load average before %s, after %s (%d CPUs)\n\n", load0, load1, runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	row := func(name, a, b string) { fmt.Fprintf(tw, "%s\t%s\t%s\t\n", name, a, b) }
	row("", "NATS cluster", "one mosquitto")
	row("devices", strconv.Itoa(nr.devices), strconv.Itoa(mr.devices))
	row("all connected in", sec(nr.connect), sec(mr.connect))
	row("total (first connect to last token)", sec(nr.total), sec(mr.total))
	row("request to token p50", sec(nr.p50), sec(mr.p50))
	row("request to token p99", sec(nr.p99), sec(mr.p99))
	row("tokens received", strconv.Itoa(nr.replies), strconv.Itoa(mr.replies))
	row("lost (no reply)", strconv.Itoa(nr.lost), strconv.Itoa(mr.lost))
	row("connected after a retry", strconv.Itoa(nr.retried), strconv.Itoa(mr.retried))
	row("failed to connect", strconv.Itoa(nr.failed), strconv.Itoa(mr.failed))
	row("refused or bad replies", strconv.Itoa(nr.errors), strconv.Itoa(mr.errors))
	row("closed by the broker during the run", strconv.Itoa(nr.dropped), strconv.Itoa(mr.dropped))
	cpu := func(r stormResult, name string) string {
		d, ok := r.cpu[name]
		if !ok {
			return "-"
		}
		return sec(d)
	}
	var ntot, mtot time.Duration
	for _, name := range []string{"nats-server n1", "nats-server n2", "nats-server n3", "mosquitto", "issuer a", "issuer b", "issuer", "simulators"} {
		row("CPU "+name, cpu(nr, name), cpu(mr, name))
		ntot += nr.cpu[name]
		mtot += mr.cpu[name]
	}
	row("CPU all", sec(ntot), sec(mtot))
	_ = tw.Flush()
	for _, s := range []struct {
		name string
		r    stormResult
	}{{"NATS", nr}, {"mosquitto", mr}} {
		for _, f := range s.r.failures {
			fmt.Fprintf(w, "%s: %s\n", s.name, f)
		}
	}
}

// loadAvg is the 1, 5 and 15 minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// firstLine is the first line of s that holds sub.
func firstLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
