package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds every wait on an event; it only guards against a hang.
const waitLimit = 10 * time.Second

// quiet is how long a test listens for bytes that must not come. A pass
// can only be wrong the safe way: a slow machine delays bytes, it never
// makes up bytes that were dropped.
const quiet = 200 * time.Millisecond

// echoServer echoes every connection and counts the ones it accepted.
type echoServer struct {
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	accepts int
	conns   []net.Conn
	errs    chan error // how each connection ended
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, errs: make(chan error, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accepts++
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_, err := io.Copy(c, c)
				s.errs <- err
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepts
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads its echo.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

// silent writes msg and checks that nothing comes back and the
// connection stays open.
func silent(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write into the blackhole: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(quiet))
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if n > 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("blackholed connection read %d bytes, err %v; want nothing and the connection open", n, err)
	}
}

func TestForwardsBothWays(t *testing.T) {
	s := startEcho(t)
	p := startProxy(t, s.ln.Addr().String())
	c := dial(t, p)
	roundTrip(t, c, "hello")
	big := bytes.Repeat([]byte("0123456789"), 20_000) // several chunks
	roundTrip(t, c, string(big))
	if n := p.Conns(); n != 1 {
		t.Fatalf("Conns = %d, want 1", n)
	}
}

func TestBlackholeKeepsConnectionsOpenAndStaysDeadAfterRestore(t *testing.T) {
	s := startEcho(t)
	p := startProxy(t, s.ln.Addr().String())
	old := dial(t, p)
	roundTrip(t, old, "before")
	p.Blackhole()
	silent(t, old, "into the void")
	// A new connection is accepted, and never reaches the target.
	fresh := dial(t, p)
	silent(t, fresh, "also lost")
	if n := s.accepted(); n != 1 {
		t.Fatalf("target accepted %d connections, want 1 (none while blackholed)", n)
	}
	if n := p.Conns(); n != 2 {
		t.Fatalf("Conns = %d while blackholed, want 2 (both kept open)", n)
	}
	p.Restore()
	silent(t, old, "still dead")
	silent(t, fresh, "still dead")
	roundTrip(t, dial(t, p), "after restore")
}

func TestResetSendsRST(t *testing.T) {
	s := startEcho(t)
	p := startProxy(t, s.ln.Addr().String())
	c := dial(t, p)
	roundTrip(t, c, "hi")
	p.Reset()
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	_, err := c.Read(make([]byte, 8))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after Reset: %v, want connection reset", err)
	}
	select {
	case err := <-s.errs:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("target side after Reset: %v, want connection reset", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("target connection still open after Reset")
	}
	roundTrip(t, dial(t, p), "new connections still forward")
}

func TestRefuse(t *testing.T) {
	s := startEcho(t)
	p := startProxy(t, s.ln.Addr().String())
	p.Refuse(true)
	c := dial(t, p)
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	if n, err := c.Read(make([]byte, 8)); n != 0 || err == nil {
		t.Fatalf("refused connection read %d bytes, err %v; want it closed", n, err)
	}
	if n := s.accepted(); n != 0 {
		t.Fatalf("target accepted %d connections while refusing", n)
	}
	p.Refuse(false)
	roundTrip(t, dial(t, p), "accepted again")
}

func TestDelay(t *testing.T) {
	s := startEcho(t)
	p := startProxy(t, s.ln.Addr().String())
	const d = 150 * time.Millisecond
	p.Delay(d)
	c := dial(t, p)
	start := time.Now()
	roundTrip(t, c, "slow")
	// Delayed on the way there and on the way back.
	if el := time.Since(start); el < 2*d {
		t.Fatalf("round trip took %v, want at least %v", el, 2*d)
	}
	p.Restore()
	roundTrip(t, c, "a live connection forwards at once again")
}

func TestThrottle(t *testing.T) {
	s := startEcho(t)
	p := startProxy(t, s.ln.Addr().String())
	const rate = 4000
	p.Throttle(rate)
	c := dial(t, p)
	start := time.Now()
	roundTrip(t, c, string(bytes.Repeat([]byte("x"), rate))) // one second's worth
	// The way there is still paying for the first message.
	roundTrip(t, c, "y")
	if el := time.Since(start); el < time.Second {
		t.Fatalf("%d bytes then 1 at %d B/s took %v, want at least 1s", rate, rate, el)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	s := startEcho(t)
	p, err := New(s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	live := dial(t, p)
	roundTrip(t, live, "live")
	p.Delay(time.Hour)
	if _, err := live.Write([]byte("held in a delay")); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	silent(t, dial(t, p), "a blackholed one, with no upstream")
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns = %d after Close", n)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), waitLimit); err == nil {
		t.Fatal("proxy still accepts after Close")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
