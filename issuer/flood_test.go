package issuer

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"agoratokens/clock"
	"agoratokens/internal/testbroker"
	"agoratokens/wire"
)

// floodMessages is how many requests the flooding device sends: a third
// malformed, a third oversize (20 KiB), a third valid. 200 MB of
// oversize payload alone: an issuer that queues what it cannot handle
// grows by far more than floodHeapBound.
const floodMessages = 30_000

// floodHeapBound bounds the issuer's heap growth under the flood. The
// bounded request path keeps at most QueueSize requests of max_payload
// bytes; the rest is garbage the collector reclaims.
const floodHeapBound = 96 << 20

// TestFloodIsShed: a device flooding its request topic with malformed,
// oversize and valid requests, at QoS 0 and 1, through mosquitto and the
// embedded broker, is rate-limited before any work; its requests are
// refused with codes and a bounded number of replies; the heap and the
// goroutines stay bounded; the log lines it triggers are throttled; and
// the other devices are still served.
func TestFloodIsShed(t *testing.T) {
	for _, kind := range []string{"mosquitto", "embedded"} {
		for _, qos := range []byte{0, 1} {
			t.Run(fmt.Sprintf("%s/qos%d", kind, qos), func(t *testing.T) { testFlood(t, kind, qos) })
		}
	}
}

func testFlood(t *testing.T, kind string, qos byte) {
	ids := []string{"cam-flood", "cam-1", "cam-2", "cam-3"}
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	log, logs := newLogger(t)
	extra := "limits: {rate: {per_minute: 60, burst: 5}}"
	var r *running
	var brokerURL string
	var pw map[string]string
	switch kind {
	case "mosquitto":
		// Queue and in-flight limits as configs/mosquitto/mosquitto.conf
		// sets them. (With its defaults, mosquitto 2.0.11 drops the flood
		// beyond 1000 queued messages and then delivers nothing more to
		// the issuer for over 10 s, other devices' requests included.)
		users := map[string]string{issuerUser: issuerPass}
		for _, d := range ids {
			users[d] = "pw-" + d
		}
		m := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{Users: users, ACLFile: "../configs/mosquitto/acl",
			ExtraConfig: "max_queued_messages 100000\nmax_inflight_messages 100\n"})
		s := writeSetup(t, fmt.Sprintf("broker: {url: %q, username: %s, password_file: broker.password}", m.URL, issuerUser), extra)
		r, brokerURL, pw = startService(t, s.config, log, clk), m.URL, users
	case "embedded":
		s := writeSetup(t, `broker: {embedded: {listen: "127.0.0.1:0", credentials_file: devices.yaml}}`, extra)
		pw = writeCredentials(t, filepath.Join(s.dir, "devices.yaml"), ids...)
		r = startService(t, s.config, log, clk)
		brokerURL = "tcp://" + r.BrokerAddr()
	}
	others := []*device{connectDevice(t, brokerURL, "cam-1", pw["cam-1"]),
		connectDevice(t, brokerURL, "cam-2", pw["cam-2"]), connectDevice(t, brokerURL, "cam-3", pw["cam-3"])}
	// The flooding device's replies, seen by a second client of its own
	// (its buffer of 1024 fails the test if the issuer answered each).
	watch := testbroker.Connect(t, brokerURL, testbroker.ClientOptions{ClientID: "cam-flood:watch", Username: "cam-flood", Password: pw["cam-flood"]})
	floodReplies := testbroker.Subscribe(t, watch, wire.NewTopics("").Token("cam-flood"))

	unloaded := make([]time.Duration, 0, len(others))
	for i, d := range others {
		start := time.Now()
		if rep := d.request(t, fmt.Sprintf("quiet-%d", i)); rep.Error != nil {
			t.Fatalf("%s before the flood: %+v", d.id, rep.Error)
		}
		unloaded = append(unloaded, time.Since(start))
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sampler := startMemSampler()

	fl := dialFlooder(t, brokerURL, "cam-flood", pw["cam-flood"])
	flooded := make(chan error, 1)
	go func() { flooded <- fl.flood(wire.NewTopics("").Req("cam-flood"), qos, floodMessages) }()

	// The other devices keep asking while the flood runs.
	var loaded []time.Duration
	for round := range 3 {
		for i, d := range others {
			start := time.Now()
			if rep := d.request(t, fmt.Sprintf("busy-%d-%d", round, i)); rep.Error != nil {
				t.Fatalf("%s during the flood: %+v", d.id, rep.Error)
			}
			loaded = append(loaded, time.Since(start))
		}
	}
	if err := <-flooded; err != nil {
		t.Fatalf("flood: %v", err)
	}
	// After the flood, the other devices are served still.
	for i, d := range others {
		if rep := d.request(t, fmt.Sprintf("after-%d", i)); rep.Error != nil {
			t.Fatalf("%s after the flood: %+v", d.id, rep.Error)
		}
	}
	peakHeap, peakGoroutines := sampler.stop()

	// The flooding device was told, with codes: invalid_request for what
	// it sent within its burst, then rate_limited once.
	codes := map[string]int{}
	var retryAfter int
	for codes[wire.CodeRateLimited] == 0 || codes[wire.CodeInvalidRequest] < 2 {
		rep, err := wire.DecodeReply(testbroker.Receive(t, floodReplies, waitTimeout).Payload())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Error != nil {
			codes[rep.Error.Code]++
			if rep.Error.Code == wire.CodeRateLimited {
				retryAfter = rep.Error.RetryAfter
			}
		} else {
			codes["ok"]++
		}
	}
	if retryAfter < 1 {
		t.Errorf("rate_limited reply with retry_after %d", retryAfter)
	}
	limited := counterValue(t, r.metrics.requests.WithLabelValues("mqtt", resultRateLimited))
	unanswered := counterValue(t, r.metrics.unanswered.WithLabelValues("rate_limited"))
	// The clock has not moved: one retry window, so one answer.
	if limited < 1 || unanswered != limited-1 {
		t.Errorf("rate-limited %v, of which unanswered %v, want all but one unanswered", limited, unanswered)
	}

	// The log lines the flood triggered are throttled: a few per message
	// per window; once the window passes, the next says how many were
	// suppressed.
	lines := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "cam-flood") && !strings.Contains(l, "level=DEBUG") {
			lines++
		}
	}
	if lines > 40 {
		t.Errorf("the flood wrote %d log lines", lines)
	}
	// Past the window, the device asks more than its burst again: the
	// first line logged of each throttled message says how many were
	// suppressed.
	clk.Advance(10 * time.Second)
	req := wire.NewTopics("").Req("cam-flood")
	for i := range 7 {
		testbroker.Publish(t, watch, req, false, []byte(fmt.Sprintf(`{"v":1,"id":"mark-%d"}`, i)))
	}
	logs.WaitFor(t, waitTimeout, "more suppressed in the last 10s")

	grew := int64(peakHeap) - int64(before.HeapInuse)
	t.Logf("%s qos %d: %d requests flooded; heap in use %d MiB before, peak %d MiB (grew %d MiB); peak goroutines %d; "+
		"%v rate-limited so far; %d log lines; other devices' latency unloaded %v, during the flood median %v max %v",
		kind, qos, floodMessages, before.HeapInuse>>20, peakHeap>>20, grew>>20, peakGoroutines, limited, lines,
		median(unloaded), median(loaded), slices.Max(loaded))
	if grew > floodHeapBound {
		t.Errorf("the heap grew by %d MiB under the flood, bound %d MiB", grew>>20, floodHeapBound>>20)
	}
	if peakGoroutines > 2_000 {
		t.Errorf("%d goroutines under the flood", peakGoroutines)
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// memSampler records the peak heap in use and goroutine count until
// stopped.
type memSampler struct {
	done  chan struct{}
	out   chan [2]uint64
	ended sync.Once
}

func startMemSampler() *memSampler {
	s := &memSampler{done: make(chan struct{}), out: make(chan [2]uint64, 1)}
	go func() {
		var peak [2]uint64
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak[0] = max(peak[0], ms.HeapInuse)
			peak[1] = max(peak[1], uint64(runtime.NumGoroutine()))
			select {
			case <-tick.C:
			case <-s.done:
				s.out <- peak
				return
			}
		}
	}()
	return s
}

func (s *memSampler) stop() (heap, goroutines uint64) {
	s.ended.Do(func() { close(s.done) })
	p := <-s.out
	return p[0], p[1]
}

// flooder is a raw MQTT 3.1.1 client that writes PUBLISH packets as fast
// as the socket takes them, from one reused buffer, so that the flood
// costs the test's heap nothing and the heap measured is the issuer's
// (and the embedded broker's).
type flooder struct {
	conn net.Conn
	w    *bufio.Writer
	buf  []byte
	id   uint16
}

func dialFlooder(t *testing.T, brokerURL, user, password string) *flooder {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var vh []byte
	vh = appendString(vh, "MQTT")
	vh = append(vh, 4, 0x80|0x40|0x02, 0, 60) // level 4; user, password, clean; keepalive 60 s
	vh = appendString(vh, user+":flood")
	vh = appendString(vh, user)
	vh = appendString(vh, password)
	pkt := appendLength([]byte{0x10}, len(vh))
	if _, err := conn.Write(append(pkt, vh...)); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if err := conn.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("flooder CONNACK % x: %v", ack, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	go func() { _, _ = io.Copy(io.Discard, conn) }() // PUBACKs; ends when conn closes
	return &flooder{conn: conn, w: bufio.NewWriterSize(conn, 64<<10)}
}

// flood publishes n requests cycling through malformed, oversize and
// valid ones.
func (f *flooder) flood(topic string, qos byte, n int) error {
	payloads := [][]byte{
		[]byte("not json"),
		[]byte(`{"v":1,"id":"big","pad":"` + strings.Repeat("x", 20<<10) + `"}`),
		[]byte(`{"v":1,"id":"flood-1"}`),
	}
	for i := range n {
		if err := f.write(topic, qos, payloads[i%len(payloads)]); err != nil {
			return err
		}
	}
	return f.w.Flush()
}

func (f *flooder) write(topic string, qos byte, payload []byte) error {
	body := 2 + len(topic) + len(payload)
	if qos > 0 {
		body += 2
	}
	f.buf = appendLength(append(f.buf[:0], 0x30|qos<<1), body)
	f.buf = appendString(f.buf, topic)
	if qos > 0 {
		f.id++
		if f.id == 0 {
			f.id = 1
		}
		f.buf = binary.BigEndian.AppendUint16(f.buf, f.id)
	}
	if _, err := f.w.Write(f.buf); err != nil {
		return err
	}
	_, err := f.w.Write(payload)
	return err
}

func appendString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// appendLength appends an MQTT remaining length.
func appendLength(b []byte, n int) []byte {
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}
