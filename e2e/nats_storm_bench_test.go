package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"agoratokens/internal/testbroker"
	"agoratokens/issuer"
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

// consumerReplicas is NATS_CONSUMER_REPLICAS (default 3, as shipped).
func consumerReplicas(b *testing.B) int {
	if v := os.Getenv("NATS_CONSUMER_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3 {
			b.Fatalf("NATS_CONSUMER_REPLICAS=%q is not 1 to 3", v)
		}
		return n
	}
	return 3
}

// selfCPU is the CPU time of this process (the issuers and the
// simulators).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stormResult merges the simulators' results.
type stormResult struct {
	total, p99   time.Duration
	replies, all int
	lost         int
	failed       int // devices that could not connect
	brokerCPU    time.Duration
	processCPU   time.Duration
}

func (r stormResult) String() string {
	return fmt.Sprintf("%d devices: total %v, p99 %v, replies %d, lost %d, not connected %d; broker CPU %v, issuer+simulator CPU %v",
		r.all, r.total.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.replies, r.lost, r.failed,
		r.brokerCPU.Round(10*time.Millisecond), r.processCPU.Round(10*time.Millisecond))
}

// storm runs one simulator per broker URL at once, devices split evenly.
func storm(b *testing.B, urls []string, prefixes []string, n int, seed []byte, brokerCPU func() time.Duration) stormResult {
	b.Helper()
	cpu0, self0 := brokerCPU(), selfCPU()
	var mu sync.Mutex
	var res stormResult
	var lat []time.Duration
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sim, err := fleetsim.New(fleetsim.Config{BrokerURL: u, Devices: n / len(urls), Prefix: prefixes[i], Seed: seed,
				Timeout: 60 * time.Second, Logger: slog.New(slog.DiscardHandler)})
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
			res.total = max(res.total, r.Total)
			res.replies += r.Replies
			res.all += r.Devices
			res.lost += r.Lost
			res.failed += r.ConnectFailed
			lat = append(lat, r.Latencies...)
		}()
	}
	wg.Wait()
	res.brokerCPU, res.processCPU = brokerCPU()-cpu0, selfCPU()-self0
	slices.Sort(lat)
	if len(lat) > 0 {
		res.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return res
}

// BenchmarkBootStormNATSvsMosquitto: a fleet boots at once, spread over
// the three nodes of a NATS cluster with two issuer replicas on NATS,
// then the same fleet on one mosquitto with one issuer, in one run
// (`FLEET_DEVICES=10000 go test -run XXX -bench BootStorm -benchtime 1x
// ./e2e/`). Reports total time, p99, lost and CPU per component.
func BenchmarkBootStormNATSvsMosquitto(b *testing.B) {
	n := stormDevices(b) / 3 * 3
	if err := fleetsim.RaiseFileLimit(uint64(2*n) + 256); err != nil {
		b.Fatal(err)
	}
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
		// NATS: 3 nodes, 2 replicas.
		e := newNATSEnvSecrets(b, testbroker.NATSOptions{Nodes: 3, Quiet: true, ConsumerReplicas: consumerReplicas(b)}, time.Hour, secrets)
		e.startReplica("a")
		e.startReplica("b")
		nodesCPU := func() time.Duration {
			var d time.Duration
			for _, nd := range e.cluster.Nodes {
				d += nd.CPU()
			}
			return d
		}
		nr := storm(b, e.cluster.MQTTURLs(), prefixes, n, seed, nodesCPU)
		b.Logf("NATS (3 nodes, consumer replicas %d, 2 issuers): %v", consumerReplicas(b), nr)

		// mosquitto: one broker, one issuer.
		dir := b.TempDir()
		passwd := filepath.Join(dir, "passwd")
		single := make([]string, 0, n+1)
		for i := range n {
			single = append(single, fleetsim.DeviceName("dev-sim-", i))
		}
		if err := fleetsim.Register(passwd, fleetsim.FormatMosquitto, seed, append(single, "agora-issuer")); err != nil {
			b.Fatal(err)
		}
		acl, _ := filepath.Abs("../configs/mosquitto/acl")
		m := testbroker.StartMosquitto(b, testbroker.MosquittoOptions{Config: fmt.Sprintf(
			"listener {{PORT}} 127.0.0.1\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nset_tcp_nodelay true\npersistence false\nallow_anonymous false\npassword_file %s\nacl_file %s\n%s",
			passwd, acl, rootUser())})
		writeFileTB(b, filepath.Join(dir, "cert"), hexTB(b)+"\n")
		writeFileTB(b, filepath.Join(dir, "issuer.pw"), fleetsim.Secret(seed, "agora-issuer")+"\n")
		writeFileTB(b, filepath.Join(dir, "policy.yaml"), "rules:\n  - match: \"dev-*\"\n    tokens:\n      video: {service: rtc, channel: \"cam-{device}\", uid: \"{uid}\", role: publisher, ttl: 1h}\n")
		cfg := filepath.Join(dir, "issuer.yaml")
		writeFileTB(b, cfg, fmt.Sprintf("app_id: %s\ncertificates: [{id: primary, file: cert}]\nbroker: {url: %q, username: agora-issuer, password_file: issuer.pw}\npolicy_file: policy.yaml\nlog_level: warn\n", hexTB(b), m.URL))
		svc, err := issuer.New(issuer.Options{ConfigFile: cfg, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		select {
		case <-svc.Started():
		case err := <-done:
			b.Fatalf("issuer: %v", err)
		}
		mr := storm(b, []string{m.URL}, []string{"dev-sim-"}, n, seed, m.CPU)
		cancel()
		<-done
		b.Logf("mosquitto (1 broker, 1 issuer): %v", mr)
		if nr.lost+nr.failed != 0 || mr.lost+mr.failed != 0 {
			b.Errorf("lost requests or devices: NATS %d+%d, mosquitto %d+%d", nr.lost, nr.failed, mr.lost, mr.failed)
		}
	}
}

// rootUser keeps mosquitto as root when the tests run as root (it would
// drop to a user that cannot read the test's files).
func rootUser() string {
	if os.Geteuid() == 0 {
		return "user root\n"
	}
	return ""
}
