package socket_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
	"agoratokens/agent/socketproto"
)

// Log messages the load test counts.
const (
	logConnected    = "socket client connected"
	logDisconnected = "socket client disconnected"
	logTooMany      = "socket client refused: too many clients"
	logDropped      = "dropping socket client"
	logAcceptFailed = "socket cannot accept connections; retrying"
	logAcceptAgain  = "socket accepts connections again"
)

// The load test's shape.
const (
	loadClients  = 1000 // at once, watching and getting
	loadRenewals = 20   // delivered to all of them
	loadCycles   = 1000 // connect/disconnect cycles after them
	loadWorkers  = 8    // running the cycles
	loadWatchers = 10   // staying through the cycles
	loadEvery    = 20   // cycles per renewal during the churn

	loadConns = loadClients + loadCycles + loadWatchers // per round
)

// TestThousandClients: a thousand clients watch and get at once and each
// gets every renewal; one more is told too_many_clients; then a thousand
// connect/disconnect cycles run while ten watchers get every renewal.
// Afterwards the process's descriptors and goroutines are back at their
// level before the first client, and (outside the race detector) a
// second round of the same leaves resident memory where the first did: a leak of one descriptor or one
// goroutine per connection would show as thousands, a leak of a client's
// buffers as megabytes.
func TestThousandClients(t *testing.T) {
	logs := newLogCounter()
	f := sockettest.NewFixture(t, socket.Config{MaxClients: loadClients, Logger: slog.New(logs)})
	levels := []usage{measure(t)} // before, then after each round
	for r := 1; r <= loadRounds; r++ {
		loadRound(t, f, logs, r)
		levels = append(levels, measure(t))
		t.Logf("after round %d of %d connections: %v (before: %v)", r, loadConns, levels[r], levels[0])
	}

	if n := logs.count(logDropped); n != 0 {
		t.Errorf("%d clients dropped as too slow", n)
	}
	if n := logs.count(logTooMany); n != loadRounds {
		t.Errorf("%d clients refused as too many, want the 1 past the limit in each of %d rounds", n, loadRounds)
	}
	// Noise allowed: a descriptor or goroutine of the runtime or the test
	// framework coming and going, and the last connections' goroutines
	// returning after their final log line.
	before := levels[0]
	for _, u := range levels[1:] {
		if u.fds > before.fds+5 {
			t.Errorf("open descriptors %d, were %d: connections leak descriptors", u.fds, before.fds)
		}
		if u.goroutines > before.goroutines+20 {
			t.Errorf("goroutines %d, were %d: connections leak goroutines", u.goroutines, before.goroutines)
		}
	}
	checkRSS(t, levels)
}

// loadRound runs the load test's two phases once; r tells the rounds'
// tokens apart.
func loadRound(t *testing.T, f *sockettest.Fixture, logs *logCounter, r int) {
	token := func(i int) string { return fmt.Sprintf("007r%dv%d", r, i) }
	f.Set("video", token(0))
	served := logs.count(logConnected)
	gone := logs.count(logDisconnected)

	// A thousand at once: each watches and gets on one connection. At
	// most 100 connect at a time: a kernel with a listen queue shorter
	// than a thousand (somaxconn was 128 before Linux 5.4) would refuse
	// the rest with EAGAIN before the server saw them.
	conns := make([]*loadConn, loadClients)
	var wg sync.WaitGroup
	errs := make(chan error, loadClients)
	connecting := make(chan struct{}, 100)
	for i := range conns {
		wg.Go(func() {
			connecting <- struct{}{}
			c, err := dialLoad(f.Srv.Path())
			if err == nil {
				conns[i] = c
				err = c.watchAndGet(token(0))
			}
			<-connecting
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	failOn(t, errs)
	if n := logs.count(logConnected) - served; n != loadClients {
		t.Fatalf("%d clients served, want %d", n, loadClients)
	}

	// The server is full: one more is refused and closed.
	extra, err := dialLoad(f.Srv.Path())
	if err != nil {
		t.Fatalf("dial past max clients: %v", err)
	}
	m, err := extra.next()
	if err != nil || m.Event != socketproto.EventError || m.Code != socketproto.CodeTooManyClients ||
		!strings.Contains(m.Message, fmt.Sprintf("at most %d", loadClients)) {
		t.Fatalf("client past max clients got %+v, %v; want too_many_clients", m, err)
	}
	if m, err := extra.next(); err != io.EOF {
		t.Fatalf("connection past max clients not closed: %+v, %v", m, err)
	}
	extra.c.Close()

	for i := 1; i <= loadRenewals; i++ {
		f.Set("video", token(i))
	}
	f.Src.Emit(agent.EventWillExpire, "video")
	for i, c := range conns {
		wg.Go(func() {
			err := c.expectTokens(token, 1, loadRenewals)
			if err == nil {
				err = c.expectEvent(socketproto.EventWillExpire)
			}
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
			c.c.Close()
		})
	}
	wg.Wait()
	failOn(t, errs)
	logs.wait(t, logDisconnected, gone+loadClients)

	// Churn: connections come and go, in four ways, while renewals reach
	// the watchers that stay.
	churn := func(i int) string { return fmt.Sprintf("007r%dw%d", r, i) }
	f.Set("video", churn(0))
	stay := make([]*loadConn, loadWatchers)
	for i := range stay {
		c, err := dialLoad(f.Srv.Path())
		if err == nil {
			err = c.watch(churn(0))
		}
		if err != nil {
			t.Fatalf("watcher %d: %v", i, err)
		}
		stay[i] = c
	}
	done := make(chan struct{}, loadCycles)
	work := make(chan int)
	for range loadWorkers {
		wg.Go(func() {
			for i := range work {
				if err := cycle(f.Srv.Path(), i); err != nil {
					errs <- fmt.Errorf("cycle %d: %w", i, err)
				}
				done <- struct{}{}
			}
		})
	}
	wg.Go(func() {
		for i := range loadCycles {
			work <- i
		}
		close(work)
	})
	renewed := 0
	for n := 1; n <= loadCycles; n++ {
		<-done
		if n%loadEvery == 0 {
			renewed++
			f.Set("video", churn(renewed))
		}
	}
	wg.Wait()
	failOn(t, errs)
	for i, c := range stay {
		wg.Go(func() {
			if err := c.expectTokens(churn, 1, renewed); err != nil {
				errs <- fmt.Errorf("watcher %d: %w", i, err)
			}
			c.c.Close()
		})
	}
	wg.Wait()
	failOn(t, errs)
	logs.wait(t, logDisconnected, gone+loadConns)
}

// cycle is one connect/disconnect of the churn phase, in one of four
// ways: a get, a watch, a connection that says nothing, one that hangs up
// in the middle of a request line.
func cycle(path string, i int) error {
	c, err := dialLoad(path)
	if err != nil {
		return err
	}
	defer c.c.Close()
	switch i % 4 {
	case 0:
		if err := c.send(`{"op":"get","name":"video","id":"g"}`); err != nil {
			return err
		}
		m, err := c.next()
		if err != nil || m.Event != socketproto.EventToken || m.ID != "g" || !strings.HasPrefix(m.Token, "007r") {
			return fmt.Errorf("get: %+v, %v", m, err)
		}
	case 1:
		if err := c.send(`{"op":"watch"}`); err != nil {
			return err
		}
		if err := c.expectEvent(socketproto.EventWatching); err != nil {
			return err
		}
		if err := c.expectEvent(socketproto.EventToken); err != nil {
			return err
		}
	case 2:
	case 3:
		if _, err := io.WriteString(c.c, `{"op":"get","na`); err != nil {
			return err
		}
	}
	return nil
}

// loadConn is a raw protocol connection that reports errors instead of
// failing the test, for use from many goroutines.
type loadConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialLoad(path string) (*loadConn, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	return &loadConn{c: c, r: bufio.NewReader(c)}, nil
}

func (c *loadConn) send(line string) error {
	_, err := io.WriteString(c.c, line+"\n")
	return err
}

// next reads one line; io.EOF when the server closed the connection.
func (c *loadConn) next() (socketproto.Message, error) {
	c.c.SetReadDeadline(time.Now().Add(loadWait))
	line, err := c.r.ReadBytes('\n')
	if err == io.EOF && len(line) == 0 {
		return socketproto.Message{}, io.EOF
	}
	if err != nil {
		return socketproto.Message{}, err
	}
	var m socketproto.Message
	if err := json.Unmarshal(line, &m); err != nil {
		return socketproto.Message{}, fmt.Errorf("bad line %q: %w", line, err)
	}
	return m, nil
}

func (c *loadConn) expectEvent(event string) error {
	m, err := c.next()
	if err != nil {
		return fmt.Errorf("want %s: %w", event, err)
	}
	if m.Event != event {
		return fmt.Errorf("got %+v, want %s", m, event)
	}
	return nil
}

// watch starts a watch and reads the current token, which must be token.
func (c *loadConn) watch(token string) error {
	if err := c.send(`{"op":"watch"}`); err != nil {
		return err
	}
	if err := c.expectEvent(socketproto.EventWatching); err != nil {
		return err
	}
	m, err := c.next()
	if err != nil || m.Event != socketproto.EventToken || m.Token != token {
		return fmt.Errorf("current token: %+v, %v; want %s", m, err, token)
	}
	return nil
}

// watchAndGet watches, then gets on the same connection: the watching
// reply, the current token (which must be token), the get's reply.
func (c *loadConn) watchAndGet(token string) error {
	if err := c.send(`{"op":"watch"}` + "\n" + `{"op":"get","name":"video","id":"g"}`); err != nil {
		return err
	}
	if err := c.expectEvent(socketproto.EventWatching); err != nil {
		return err
	}
	for _, id := range []string{"", "g"} {
		m, err := c.next()
		if err != nil || m.Event != socketproto.EventToken || m.ID != id || m.Token != token {
			return fmt.Errorf("token (id %q): %+v, %v; want %s", id, m, err, token)
		}
	}
	return nil
}

// expectTokens reads the tokens token(from)…token(to), in order.
func (c *loadConn) expectTokens(token func(int) string, from, to int) error {
	for i := from; i <= to; i++ {
		m, err := c.next()
		if err != nil || m.Event != socketproto.EventToken || m.Token != token(i) {
			return fmt.Errorf("renewal %d: %+v, %v; want token %s", i, m, err, token(i))
		}
	}
	return nil
}

// failOn fails the test with the first few errors collected.
func failOn(t *testing.T, errs chan error) {
	t.Helper()
	for n := 0; ; n++ {
		select {
		case err := <-errs:
			if n < 5 {
				t.Error(err)
			}
		default:
			if n > 0 {
				t.FailNow()
			}
			return
		}
	}
}

// loadWait bounds each read of the load test: generous, the machine may
// be busy with a thousand connections.
const loadWait = 60 * time.Second

// usage is what the process holds.
type usage struct {
	fds, goroutines int
	rssKiB          int64
}

func (u usage) String() string {
	return fmt.Sprintf("%d fds, %d goroutines, VmRSS %d KiB", u.fds, u.goroutines, u.rssKiB)
}

// measure collects garbage, returns freed memory to the kernel and reads
// the process's descriptors, goroutines and resident memory.
func measure(t *testing.T) usage {
	t.Helper()
	debug.FreeOSMemory()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count descriptors: %v", err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("read memory use: %v", err)
	}
	u := usage{fds: len(fds), goroutines: runtime.NumGoroutine(), rssKiB: -1}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			u.rssKiB, err = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
		}
	}
	if u.rssKiB < 0 {
		t.Fatal("no VmRSS in /proc/self/status")
	}
	return u
}

// logCounter is a slog.Handler that counts records by message, so a
// test can wait for the n-th one without scanning the log's text.
type logCounter struct {
	mu      sync.Mutex
	n       map[string]int
	changed chan struct{} // closed by the next record, made by a waiter
}

func newLogCounter() *logCounter { return &logCounter{n: map[string]int{}} }

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCounter) WithGroup(string) slog.Handler            { return l }

func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n[r.Message]++
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return nil
}

func (l *logCounter) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[msg]
}

// wait waits until msg has been logged n times.
func (l *logCounter) wait(t *testing.T, msg string, n int) {
	t.Helper()
	timeout := time.After(loadWait)
	for {
		l.mu.Lock()
		got := l.n[msg]
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%q logged %d times within %v, want %d", msg, got, loadWait, n)
		}
	}
}
