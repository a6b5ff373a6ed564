package socket_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
	"agoratokens/agent/socketproto"
	"agoratokens/internal/testlog"
)

// wait bounds every wait for a line.
const wait = 10 * time.Second

// conn is a raw protocol connection as a C or shell client would see it.
type conn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, path string) *conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, c: c, r: bufio.NewReaderSize(c, 1<<16)}
}

func (c *conn) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		c.t.Fatalf("send %.60q: %v", line, err)
	}
}

// next reads one line and decodes it.
func (c *conn) next() socketproto.Message {
	c.t.Helper()
	m, err := c.read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

func (c *conn) read() (socketproto.Message, error) {
	c.c.SetReadDeadline(time.Now().Add(wait))
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return socketproto.Message{}, err
	}
	var m socketproto.Message
	if err := json.Unmarshal(line, &m); err != nil {
		return socketproto.Message{}, errors.New("bad line " + string(line) + ": " + err.Error())
	}
	return m, nil
}

// expect reads one line and checks its event (and code, for errors).
func (c *conn) expect(event string, code ...string) socketproto.Message {
	c.t.Helper()
	m := c.next()
	if m.Event != event || (len(code) > 0 && m.Code != code[0]) {
		c.t.Fatalf("got %+v, want event %q %v", m, event, code)
	}
	return m
}

// expectEOF reads until the server closes the connection.
func (c *conn) expectEOF() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(wait))
	rest, err := io.ReadAll(c.r)
	if err != nil {
		c.t.Fatalf("want the server to close the connection, got %v after %q", err, rest)
	}
	if len(rest) > 0 {
		c.t.Fatalf("want the connection closed, got more lines: %q", rest)
	}
}

// expectClosed reads until the server closes the connection, by EOF or,
// when the server closed with our bytes unread, by a reset.
func (c *conn) expectClosed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(wait))
	rest, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("want the server to close the connection, got %v after %q", err, rest)
	}
	if len(rest) > 0 {
		c.t.Fatalf("want the connection closed, got more lines: %q", rest)
	}
}

// fixture is a server over a fake source on an injected clock, with
// its log.
type fixture struct {
	*sockettest.Fixture
	logs *testlog.Buffer
}

func newFixture(t *testing.T, cfg socket.Config) *fixture {
	t.Helper()
	logs := &testlog.Buffer{}
	cfg.Logger = logs.Logger()
	return &fixture{Fixture: sockettest.NewFixture(t, cfg), logs: logs}
}

// watch dials the server and watches every name, expecting the
// acknowledgement.
func (f *fixture) watch(t *testing.T) *conn {
	t.Helper()
	c := dial(t, f.Srv.Path())
	c.send(`{"op":"watch"}`)
	c.expect("watching")
	return c
}

// waitResubscribe waits until the server, its engine subscription
// dropped, waits the resubscription delay (a second) on its clock, and
// moves the clock past it.
func (f *fixture) waitResubscribe(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := f.Clock.WaitTimers(ctx, 1); err != nil {
		t.Fatalf("the server armed no resubscription timer: %v", err)
	}
	if p := f.Clock.Pending(); len(p) != 1 || p[0] != time.Second {
		t.Fatalf("timers armed for %v, want one resubscription after 1s", p)
	}
	f.Clock.Advance(time.Second)
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
