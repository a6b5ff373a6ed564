package socket_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
	"agoratokens/agent/socketproto"
)

func TestGet(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.Set("video", "007video1")
	f.Src.Want("signal")
	f.Set("old", "007old")
	f.Clock.Advance(30 * time.Minute)
	// "old" was set 30 min ago with 1 h to live; make it expire.
	f.Src.Set(expiredToken(f, "old"))
	c := dial(t, f.Srv.Path())

	c.send(`{"op":"get","name":"video","id":"q1"}`)
	m := c.expect("token")
	if m.ID != "q1" || m.Name != "video" || m.Token != "007video1" || m.Service != "rtc" ||
		m.Channel != "cam-42" || m.UID != "2882341273" || m.KID != "primary" ||
		m.ExpiresAt != sockettest.T0.Unix()+3600 || m.ExpiresIn == nil || *m.ExpiresIn != 1800 {
		t.Errorf("get video = %+v", m)
	}

	tests := []struct{ name, code, msg string }{
		{"nope", socketproto.CodeNotFound, `no token named "nope"`},
		{"signal", socketproto.CodeUnavailable, "still fetching"},
		{"old", socketproto.CodeUnavailable, "expired"},
		// The agent does not echo a client's kilobytes back.
		{strings.Repeat("n", 4096), socketproto.CodeNotFound, `no token named "nnnn`},
	}
	for _, tt := range tests {
		t.Run(tt.name[:min(len(tt.name), 10)], func(t *testing.T) {
			c.send(fmt.Sprintf(`{"op":"get","name":%q,"id":"e"}`, tt.name))
			m := c.expect("error", tt.code)
			if m.ID != "e" || !strings.Contains(m.Message, tt.msg) || m.Token != "" || len(m.Message) > 200 {
				t.Errorf("get %.10s = %+v, want a short message containing %q", tt.name, m, tt.msg)
			}
		})
	}

	c.send(`{"op":"get"}`)
	all := c.expect("tokens")
	if len(all.Tokens) != 1 || all.Tokens[0].Name != "video" || all.Tokens[0].Token != "007video1" || all.Tokens[0].Event != "" {
		t.Errorf("get all = %+v, want only the valid video token", all)
	}
}

// expiredToken is a token for name that expired a second ago.
func expiredToken(f *fixture, name string) agent.Token {
	wall := f.Clock.Wall().Unix()
	t := agent.Token{ReceivedAt: f.Clock.Now().Add(-time.Hour - time.Second)}
	t.Name, t.Service, t.Token, t.KID = name, "rtc", "007"+name+"-expired", "primary"
	t.IssuedAt = wall - 3601
	t.ExpiresAt = wall - 1
	return t
}

func TestStatus(t *testing.T) {
	f := newFixture(t, socket.Config{Device: "ignored"})
	f.Set("video", "007video1")
	f.Src.Want("signal")
	f.Src.SetBroker("disconnected")
	c := dial(t, f.Srv.Path())
	c.send(`{"op":"status","id":7}`) // a numeric id is a bad request
	c.expect("error", socketproto.CodeBadRequest)
	c.send(`{"op":"status","id":"s"}`)
	m := c.expect("status")
	if m.ID != "s" || m.Device != "cam-42" || m.Broker != "disconnected" || len(m.Tokens) != 2 {
		t.Fatalf("status = %+v", m)
	}
	v, s := m.Tokens[0], m.Tokens[1]
	if v.Name != "video" || v.State != "valid" || v.KID != "primary" || v.ExpiresIn == nil || *v.ExpiresIn != 3600 || v.Token != "" {
		t.Errorf("status video = %+v", v)
	}
	if s.Name != "signal" || s.State != "missing" || s.ExpiresIn != nil || s.KID != "" {
		t.Errorf("status signal = %+v", s)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.Set("video", "007video1")
	c := dial(t, f.Srv.Path())
	tests := []struct{ name, line, code, msg string }{
		{"garbage", `{"op":`, socketproto.CodeBadRequest, "not a JSON object"},
		{"not an object", `[1,2]`, socketproto.CodeBadRequest, "not a JSON object"},
		{"binary", "\x00\x01\xff", socketproto.CodeBadRequest, "not a JSON object"},
		{"no op", `{"name":"video"}`, socketproto.CodeBadRequest, `missing "op"`},
		{"unknown op", `{"op":"delete","id":"x"}`, socketproto.CodeBadRequest, `unknown op "delete"`},
		{"renew without name", `{"op":"renew"}`, socketproto.CodeBadRequest, `renew needs a "name"`},
		{"names not a list", `{"op":"watch","names":"video"}`, socketproto.CodeBadRequest, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.send(tt.line)
			m := c.expect("error", tt.code)
			if !strings.Contains(m.Message, tt.msg) {
				t.Errorf("message %q, want it to contain %q", m.Message, tt.msg)
			}
		})
	}
	// The connection survives all of that; blank and CRLF lines are fine.
	c.send("")
	c.send(`{"op":"get","name":"video"}` + "\r")
	c.expect("token")
}

func TestLineLimit(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.Set("video", "007video1")

	// A line of exactly MaxLine bytes is served.
	c := dial(t, f.Srv.Path())
	head := `{"op":"get","name":"video","pad":"`
	c.send(head + strings.Repeat("x", socketproto.MaxLine-len(head)-2) + `"}`)
	c.expect("token")

	// One byte more: an error, then the connection closes.
	c.send(head + strings.Repeat("x", socketproto.MaxLine-len(head)-1) + `"}`)
	c.expect("error", socketproto.CodeLineTooLong)
	c.expectClosed()

	// A megabyte without a newline: the same, and the agent is unaffected.
	big := dial(t, f.Srv.Path())
	go big.c.Write([]byte(strings.Repeat("y", 1<<20))) // the server stops reading; Write may fail
	big.expect("error", socketproto.CodeLineTooLong)
	big.expectClosed()
	other := dial(t, f.Srv.Path())
	other.send(`{"op":"get","name":"video"}`)
	other.expect("token")
	if !strings.Contains(f.logs.String(), "line too long") {
		t.Errorf("no log line about the long line:\n%s", f.logs)
	}
}

// TestWatchManyClients: every client gets every event in order.
func TestWatchManyClients(t *testing.T) {
	const clients, renewals = 30, 100
	f := newFixture(t, socket.Config{MaxClients: clients + 1, QueueLen: renewals + 10})
	f.Set("video", "007v0")
	f.Set("signal", "007s0")

	conns := make([]*conn, clients)
	for i := range conns {
		conns[i] = dial(t, f.Srv.Path())
		conns[i].send(`{"op":"watch","id":"w"}`)
		if m := conns[i].expect("watching"); m.ID != "w" || m.Names != nil {
			t.Fatalf("watching reply %+v", m)
		}
		// The current tokens at once, in the source's order.
		if m := conns[i].expect("token"); m.Name != "video" || m.Token != "007v0" {
			t.Fatalf("first token %+v", m)
		}
		if m := conns[i].expect("token"); m.Name != "signal" || m.Token != "007s0" {
			t.Fatalf("second token %+v", m)
		}
	}
	for i := 1; i <= renewals; i++ {
		f.Set("video", fmt.Sprintf("007v%d", i))
	}
	f.Src.Emit(agent.EventWillExpire, "video")
	f.Src.Emit(agent.EventExpired, "video")

	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for n := 1; n <= renewals; n++ {
				m, err := c.read()
				if err != nil || m.Event != "token" || m.Name != "video" || m.Token != fmt.Sprintf("007v%d", n) {
					t.Errorf("client %d renewal %d: got %+v, %v", i, n, m, err)
					return
				}
			}
			if m, err := c.read(); err != nil || m.Event != "will_expire" || m.Name != "video" || m.ExpiresIn == nil || *m.ExpiresIn != 3600 {
				t.Errorf("client %d: want will_expire, got %+v, %v", i, m, err)
			}
			if m, err := c.read(); err != nil || m.Event != "expired" || m.Name != "video" || m.KID != "primary" || m.Token != "" {
				t.Errorf("client %d: want expired, got %+v, %v", i, m, err)
			}
		})
	}
	wg.Wait()
}

func TestWatchNames(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.Set("video", "007v0")
	f.Set("signal", "007s0")
	f.Src.Want("chat")

	c := dial(t, f.Srv.Path())
	c.send(`{"op":"watch","names":["video","nope"]}`)
	c.expect("error", socketproto.CodeNotFound)
	c.send(`{"op":"watch","names":["signal","chat"]}`)
	if m := c.expect("watching"); len(m.Names) != 2 {
		t.Fatalf("watching %+v", m)
	}
	c.expect("token") // signal; chat has no token yet
	c.send(`{"op":"watch"}`)
	c.expect("error", socketproto.CodeBadRequest)

	f.Set("video", "007v1") // not watched
	f.Set("chat", "007c1")
	if m := c.expect("token"); m.Name != "chat" || m.Token != "007c1" {
		t.Fatalf("want the chat token, got %+v", m)
	}
	// Requests still work on a watching connection.
	c.send(`{"op":"get","name":"video","id":"g"}`)
	if m := c.expect("token"); m.ID != "g" || m.Token != "007v1" {
		t.Fatalf("get while watching: %+v", m)
	}
}

// TestWatchExpiredAtStart: a watcher that arrives after expiry learns it.
func TestWatchExpiredAtStart(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.Set("video", "007v0")
	f.Clock.Advance(time.Hour + time.Second)
	c := f.watch(t)
	if m := c.expect("expired"); m.Name != "video" {
		t.Fatalf("got %+v", m)
	}
	f.Src.Emit(agent.EventExpired, "video") // the same expiry again: not repeated
	f.Set("video", "007v1")
	if m := c.expect("token"); m.Token != "007v1" {
		t.Fatalf("got %+v", m)
	}
}

func TestRenew(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.Set("video", "007v0")
	watcher := f.watch(t)
	watcher.expect("token")

	c := dial(t, f.Srv.Path())
	c.send(`{"op":"renew","name":"video","id":"r"}`)
	if m := c.expect("renewing"); m.ID != "r" || m.Name != "video" {
		t.Fatalf("renewing %+v", m)
	}
	if name := <-f.Src.Renews(); name != "video" {
		t.Fatalf("engine asked to renew %q", name)
	}
	f.Set("video", "007v1")
	// The asking connection gets the new token although it does not watch,
	if m := c.expect("token"); m.Token != "007v1" || m.ID != "" {
		t.Fatalf("after renew: %+v", m)
	}
	// and so does the watcher.
	if m := watcher.expect("token"); m.Token != "007v1" {
		t.Fatalf("watcher: %+v", m)
	}
	// Only the next token: later ones do not reach the non-watcher.
	f.Set("video", "007v2")
	watcher.expect("token")
	c.send(`{"op":"get","name":"video"}`)
	if m := c.expect("token"); m.Token != "007v2" {
		t.Fatalf("get after renew: %+v", m)
	}

	c.send(`{"op":"renew","name":"nope"}`)
	c.expect("error", socketproto.CodeNotFound)
	f.Src.SetRenewError(errors.New("rate limited: next renewal in 5s"))
	c.send(`{"op":"renew","name":"video"}`)
	if m := c.expect("error", socketproto.CodeUnavailable); !strings.Contains(m.Message, "rate limited") {
		t.Errorf("renew error message %q", m.Message)
	}
}

// TestDisconnectMidStream: one watcher leaving does not disturb the rest.
func TestDisconnectMidStream(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.Set("video", "007v0")
	var conns []*conn
	for range 3 {
		c := f.watch(t)
		c.expect("token")
		conns = append(conns, c)
	}
	f.Set("video", "007v1")
	conns[1].expect("token")
	conns[1].c.Close()
	for i := 2; i <= 20; i++ {
		f.Set("video", fmt.Sprintf("007v%d", i))
	}
	for _, c := range []*conn{conns[0], conns[2]} {
		for i := 1; i <= 20; i++ {
			if m := c.expect("token"); m.Token != fmt.Sprintf("007v%d", i) {
				t.Fatalf("got %+v, want token %d", m, i)
			}
		}
	}
	if err := f.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestTooManyClients(t *testing.T) {
	f := newFixture(t, socket.Config{MaxClients: 2})
	f.Set("video", "007v0")
	a, b := dial(t, f.Srv.Path()), dial(t, f.Srv.Path())
	a.send(`{"op":"status"}`)
	a.expect("status")
	b.send(`{"op":"status"}`)
	b.expect("status")
	c := dial(t, f.Srv.Path())
	if m := c.expect("error", socketproto.CodeTooManyClients); !strings.Contains(m.Message, "at most 2") {
		t.Errorf("message %q", m.Message)
	}
	c.expectEOF()
}

// TestSlowClientDropped: a client that stops reading is dropped; the
// engine and the other clients never wait for it.
func TestSlowClientDropped(t *testing.T) {
	const events = 200
	f := newFixture(t, socket.Config{QueueLen: 4})
	f.Set("video", "007v0")
	slow, fast := f.watch(t), f.watch(t)
	for _, c := range []*conn{slow, fast} {
		c.expect("token")
	}
	pad := strings.Repeat("A", 16<<10) // fills the slow client's socket buffer fast
	for i := 1; i <= events; i++ {
		f.Set("video", fmt.Sprintf("007v%d-%s", i, pad))
		// Paced by the fast client, so only the slow one can fall behind.
		if m := fast.expect("token"); !strings.HasPrefix(m.Token, fmt.Sprintf("007v%d-", i)) {
			t.Fatalf("fast client: got %.20s, want token %d", m.Token, i)
		}
	}
	got := 0
	for {
		m, err := slow.read()
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			break
		}
		if err != nil {
			t.Fatalf("slow client: want the connection closed, got %v", err)
		}
		if m.Event == "token" {
			got++
		}
	}
	if got >= events {
		t.Errorf("slow client got all %d tokens; want it dropped", got)
	}
	if !containsAll(f.logs.String(), "dropping socket client", "too slow") {
		t.Errorf("no log line about the dropped client:\n%s", f.logs)
	}
	if n := f.Src.Dropped(); n != 0 {
		t.Errorf("the engine dropped %d subscriptions: the server blocked it", n)
	}
}

// TestShutdown: clients see the queued lines, then a clean close, and
// the socket file goes away.
func TestShutdown(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.Set("video", "007v0")
	c := f.watch(t)
	c.expect("token")
	if err := f.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	c.expectEOF()
	if _, err := dialErr(f.Srv.Path()); err == nil {
		t.Error("socket still accepts connections after shutdown")
	}
	if exists(f.Srv.Path()) {
		t.Error("socket file left behind")
	}
}

// TestResubscribe: if the engine drops the server's subscription, the
// server subscribes again and catches its watchers up on what they missed.
func TestResubscribe(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.Set("video", "007v0")
	c := f.watch(t)
	c.expect("token")
	f.Src.DropSubscribers()
	f.Set("video", "007v1") // nobody subscribed: this event is lost
	f.waitResubscribe(t)
	if m := c.expect("token"); m.Token != "007v1" {
		t.Fatalf("after resubscribing: %+v", m)
	}
	f.Set("video", "007v2")
	if m := c.expect("token"); m.Token != "007v2" {
		t.Fatalf("events after resubscribing: %+v", m)
	}
	if !strings.Contains(f.logs.String(), "subscribing again") {
		t.Errorf("no log line about the lost subscription:\n%s", f.logs)
	}
}

// TestEventWhileResubscribing: a token event emitted while the server
// subscribes again (after its subscription was dropped) still reaches
// the watchers, from the catch-up if not from the new subscription.
func TestEventWhileResubscribing(t *testing.T) {
	f := newFixture(t, socket.Config{})
	f.Set("video", "007v0")
	c := f.watch(t)
	c.expect("token")
	var once sync.Once
	f.Src.SetSubscribeHook(func() { once.Do(func() { f.Set("video", "007v1") }) })
	f.Src.DropSubscribers()
	f.waitResubscribe(t)
	if m := c.expect("token"); m.Token != "007v1" {
		t.Fatalf("token set while resubscribing: got %+v", m)
	}
	f.Set("video", "007v2")
	if m := c.expect("token"); m.Token != "007v2" {
		t.Fatalf("after resubscribing: %+v", m)
	}
}

// TestSubscribedWhenReady: the server holds its engine subscription by
// the time it accepts watchers, or an event between a watcher's snapshot
// and the subscription would be lost to it.
func TestSubscribedWhenReady(t *testing.T) {
	src := sockettest.NewSource("cam-42", nil)
	subscribed := make(chan struct{})
	var once sync.Once
	src.SetSubscribeHook(func() { once.Do(func() { close(subscribed) }) })
	sockettest.Serve(t, socket.Config{}, src)
	select {
	case <-subscribed:
	default:
		t.Fatal("server ready before it subscribed to the engine's events")
	}
}

// TestShutdownStuckClient: a client that stopped reading cannot hold up
// shutdown.
func TestShutdownStuckClient(t *testing.T) {
	f := newFixture(t, socket.Config{QueueLen: 1024})
	f.Set("video", "007v0")
	stuck, probe := f.watch(t), f.watch(t)
	for _, c := range []*conn{stuck, probe} {
		c.expect("token")
	}
	pad := strings.Repeat("A", 16<<10)
	for i := 1; i <= 64; i++ { // 1 MiB: more than the socket buffers hold
		f.Set("video", fmt.Sprintf("007v%d-%s", i, pad))
		probe.expect("token")
	}
	done := make(chan error, 1)
	go func() { done <- f.Stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown waited for a client that does not read")
	}
}
