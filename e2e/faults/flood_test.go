package faults

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/internal/testbroker"
)

// floodPayloads are what a broken or hostile device sends on its request
// topic: every shape of malformed JSON, wrong types and versions, ids and
// token lists too long, payloads over the issuer's 16 KiB limit (below
// the broker's packet limit, so that the issuer has to refuse them), bytes
// that are not UTF-8 — and valid requests, far more often than the rate
// limit allows.
func floodPayloads() [][]byte {
	random := make([]byte, 200<<10)
	if _, err := rand.Read(random); err != nil {
		panic(err)
	}
	var names []string
	for i := 0; i < 2000; i++ {
		names = append(names, fmt.Sprintf("%q", fmt.Sprintf("n%d", i)))
	}
	return [][]byte{
		[]byte(`{`),
		[]byte(`not json at all`),
		[]byte(`null`), []byte(`[]`), []byte(`123`), []byte(`"v"`), []byte(``),
		[]byte(`{"v":1,"id":123}`),
		[]byte(`{"v":2,"id":"wrong-version"}`),
		[]byte(`{"v":1,"id":"` + strings.Repeat("a", 10000) + `"}`),
		[]byte(`{"v":1,"id":"many","tokens":[` + strings.Join(names, ",") + `]}`),
		[]byte(`{"v":1,"id":"nope","tokens":["nope"]}`),
		[]byte(`{"v":1,"id":"other","tokens":["video"],"device":"dev-1"}`),
		[]byte(strings.Repeat("[", 100<<10)),
		[]byte(`{"v":1,"id":"big","pad":"` + strings.Repeat("x", 20<<10) + `"}`),
		random,
		{0xff, 0xfe, '{', 0x80, '}'},
		[]byte(`{"v":1,"id":"f-1"}`),
		[]byte(`{"v":1,"id":"f-2","tokens":["video"]}`),
		[]byte(`{"v":1,"id":"f-1"}`), // a replay
	}
}

// TestDeviceFloodsIssuer: a device with valid credentials floods its
// request topic for two token lifetimes, at QoS 0 and 1, with the
// payloads above. The other cameras keep renewing as if nothing happened
// (the promise with no grace: nothing of theirs failed), the issuer does
// not crash, and it answers the flooder with errors that name the
// problem.
func TestDeviceFloodsIssuer(t *testing.T) {
	t.Parallel()
	f := newFleet(t, fleetOptions{Agents: 2, Spare: []string{"dev-flood"}, TTL: scenarioTTL, RenewBefore: scenarioRenewBefore, LogLevel: "info"})
	f.waitAllTokens(15 * time.Second)
	before, err := readUsage(f.issuer.pid())
	if err != nil {
		t.Fatal(err)
	}

	opts := testbroker.Options("tcp://"+f.brokerAt, testbroker.ClientOptions{ClientID: "dev-flood", Username: "dev-flood", Password: f.devices["dev-flood"]})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("the flooder cannot connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	var mu sync.Mutex
	codes := map[string]int{}
	sub := c.Subscribe("agora/v1/devices/dev-flood/token", 1, func(_ mqtt.Client, m mqtt.Message) {
		var r struct {
			Tokens []json.RawMessage `json:"tokens"`
			Error  *struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		code := "unparsable"
		if json.Unmarshal(m.Payload(), &r) == nil {
			code = "ok"
			if r.Error != nil {
				code = r.Error.Code
			}
		}
		mu.Lock()
		codes[code]++
		mu.Unlock()
	})
	if !sub.WaitTimeout(10*time.Second) || sub.Error() != nil {
		t.Fatalf("the flooder cannot subscribe: %v", sub.Error())
	}

	marks := f.marks()
	logBefore := len(f.issuer.log.String())
	f.tl.note("dev-flood: flood starts")
	payloads := floodPayloads()
	var sent atomic.Int64
	end := time.Now().Add(2 * scenarioTTL)
	topic := "agora/v1/devices/dev-flood/req"
	for i := 0; time.Now().Before(end); i++ {
		p := payloads[i%len(payloads)]
		qos := byte(i % 2)
		if len(p) > 64<<10 && i%10 != 0 {
			continue // the big ones, a tenth as often
		}
		tok := c.Publish(topic, qos, false, p)
		if qos == 1 && i%50 == 1 {
			// Now and then wait for the broker, so that the flood runs at
			// the pace the broker takes it rather than queue in paho.
			tok.WaitTimeout(5 * time.Second)
		}
		sent.Add(1)
		if i%100 == 99 {
			pause(50 * time.Millisecond) // about 2000 messages a second
		}
	}
	f.tl.note(fmt.Sprintf("dev-flood: flood ends after %d messages", sent.Load()))
	floodLog := f.issuer.log.String()[logBefore:]
	if !f.issuer.running() {
		t.Fatal("the issuer died under the flood")
	}
	after, err := readUsage(f.issuer.pid())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	t.Logf("flood: %d messages sent; replies to the flooder by code: %v; issuer before %v, after %v", sent.Load(), codes, before, after)
	gotInvalid, gotLimited := codes["invalid_request"] > 0, codes["rate_limited"] > 0
	mu.Unlock()
	if !gotInvalid || !gotLimited {
		t.Errorf("the flooder was not told invalid_request and rate_limited: %v", codes)
	}
	// The issuer's log names the flooder and what it did wrong, without
	// a line per message: a device must not be able to fill the journal.
	lines := strings.Count(floodLog, "device=dev-flood")
	t.Logf("flood: the issuer logged %d lines about dev-flood", lines)
	if lines == 0 {
		t.Error("the issuer's log does not name the flooding device")
	}
	if limit := int(2*scenarioTTL/time.Second) + 100; lines > limit {
		t.Errorf("the issuer logged %d lines about one flooding device in %v (%d messages); a device can fill the journal (want at most %d)",
			lines, 2*scenarioTTL, sent.Load(), limit)
	}
	f.settle(marks)
	f.assertPromise()
}

// TestLocalProcessAbusesSocket: a local process throws at dev-1's socket
// everything the protocol says the agent must survive — lines that are
// not JSON, unknown ops, wrong types, a line over 64 KiB, more
// connections than socket.max_clients, a watcher that never reads, and a
// burst of renew requests. The watch client on the same socket keeps its
// token and every renewal (no grace: nothing it depends on failed), the
// agent survives, answers status afterwards, and the renew burst does
// not turn into a burst of requests to the issuer.
func TestLocalProcessAbusesSocket(t *testing.T) {
	t.Parallel()
	f := newFleet(t, fleetOptions{Agents: 1, TTL: scenarioTTL, RenewBefore: scenarioRenewBefore})
	f.waitAllTokens(15 * time.Second)
	dev1 := f.agent("dev-1")
	marks := f.marks()
	f.tl.note("socket abuse starts")
	start := time.Now()
	issuerBefore := strings.Count(f.issuer.log.String(), "device=dev-1")

	var wg sync.WaitGroup
	var refused atomic.Int64
	dial := func() net.Conn {
		c, err := net.Dial("unix", dev1.sock)
		if err != nil {
			t.Errorf("dial the agent's socket: %v", err)
			return nil
		}
		return c
	}
	// More connections than max_clients (32), held for a while.
	var held []net.Conn
	for i := 0; i < 40; i++ {
		if c := dial(); c != nil {
			held = append(held, c)
		}
	}
	for _, c := range held {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if line, err := bufio.NewReader(c).ReadString('\n'); err == nil && strings.Contains(line, "too_many_clients") {
				refused.Add(1)
			}
		}(c)
	}
	wg.Wait()
	for _, c := range held {
		c.Close()
	}
	if refused.Load() == 0 {
		t.Error("40 connections at once (max_clients 32): none was refused with too_many_clients")
	}

	// Garbage, each on a connection of its own, read until the agent
	// answers or closes.
	for _, line := range []string{
		"not json", `{"op":"nope"}`, `{"op":"get","name":123}`, `{"op":"get","id":5}`, `[]`, `null`,
		"\x00\x01\x02", `{"op":"watch","names":"video"}`, `{"op":"renew"}`,
		`{"op":"get","name":"` + strings.Repeat("v", 70<<10) + `"}`,
	} {
		c := dial()
		if c == nil {
			continue
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte(line + "\n"))
		if reply, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.Contains(reply, `"event":"error"`) {
			t.Errorf("the agent's answer to %.40q: %q, %v; want an error line", line, reply, err)
		}
		c.Close()
	}

	// A watcher that never reads, while renew requests make the agent
	// send lines: it must be dropped, not slow anyone down.
	silent := dial()
	if silent != nil {
		_, _ = silent.Write([]byte(`{"op":"watch"}` + "\n"))
		defer silent.Close()
	}
	burst := dial()
	if burst != nil {
		for i := 0; i < 200; i++ {
			_, _ = burst.Write([]byte(`{"op":"renew","name":"video"}` + "\n" + `{"op":"status"}` + "\n"))
		}
		defer burst.Close()
	}

	f.settle(marks)
	took := time.Since(start)
	if st := askSocket(t, dev1.sock, `{"op":"status"}`); st["event"] != "status" {
		t.Errorf("after the abuse, status answered %v", st)
	}
	// Requests the issuer saw from dev-1: the renewals that fell due,
	// plus at most one forced renewal per renew_min_interval (1 s).
	requests := strings.Count(f.issuer.log.String(), "device=dev-1") - issuerBefore
	if limit := int(took/time.Second) + 2*int(took/(scenarioTTL-scenarioRenewBefore)) + 4; requests > limit {
		t.Errorf("200 renew requests on the socket made the agent send %d requests to the issuer in %v (at most %d expected)", requests, took.Round(time.Second), limit)
	}
	t.Logf("socket abuse: %d of 40 connections refused as too many; the issuer saw %d requests from dev-1 in %v", refused.Load(), requests, took.Round(time.Second))
	f.assertPromise()
}
