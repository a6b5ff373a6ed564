package client_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/client"
	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
	"agoratokens/agent/socketproto"
)

const wait = 10 * time.Second

func serve(t *testing.T, path string) *sockettest.Fixture {
	t.Helper()
	return sockettest.NewFixture(t, socket.Config{Path: path})
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// next reads one event or fails after wait.
func next(t *testing.T, ch <-chan client.Event) client.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(wait):
		t.Fatal("no event within 10s")
	}
	panic("unreachable")
}

func expectToken(t *testing.T, ch <-chan client.Event, name, token string) client.Event {
	t.Helper()
	ev := next(t, ch)
	if ev.Kind != client.EventToken || ev.Name != name || ev.Token.Token != token {
		t.Fatalf("got %+v, want token %s=%s", ev, name, token)
	}
	return ev
}

// expectWatching reads the watch's confirmation, which names names.
func expectWatching(t *testing.T, ch <-chan client.Event, names ...string) {
	t.Helper()
	ev := next(t, ch)
	if ev.Kind != client.EventWatching || !slices.Equal(ev.Names, names) {
		t.Fatalf("got %+v, want watching %q", ev, names)
	}
}

func TestGetStatusRenew(t *testing.T) {
	f := serve(t, "")
	f.Set("video", "007v0")
	f.Src.Want("signal")
	c, err := client.Dial(f.Srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	before := time.Now()
	tok, err := c.Get(ctx(t), "video")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Token != "007v0" || tok.Channel != "cam-42" || tok.UID != "2882341273" || tok.KID != "primary" ||
		tok.ExpiresIn != time.Hour || !tok.ExpiresAt.Equal(sockettest.T0.Add(time.Hour)) ||
		tok.Deadline.Before(before.Add(time.Hour)) || tok.Deadline.After(time.Now().Add(time.Hour)) {
		t.Errorf("Get = %+v", tok)
	}
	if _, err := c.Get(ctx(t), "signal"); !client.IsCode(err, socketproto.CodeUnavailable) {
		t.Errorf("Get missing token: %v, want unavailable", err)
	}
	if _, err := c.Get(ctx(t), "nope"); !client.IsCode(err, socketproto.CodeNotFound) {
		t.Errorf("Get unknown token: %v, want not_found", err)
	}
	all, err := c.GetAll(ctx(t))
	if err != nil || len(all) != 1 || all[0].Name != "video" {
		t.Errorf("GetAll = %+v, %v", all, err)
	}
	st, err := c.Status(ctx(t))
	if err != nil || st.Device != "cam-42" || st.Broker != "connected" || len(st.Tokens) != 2 ||
		st.Tokens[0].State != "valid" || st.Tokens[0].ExpiresIn != time.Hour || st.Tokens[1].State != "missing" {
		t.Errorf("Status = %+v, %v", st, err)
	}

	got := make(chan error, 1)
	go func() {
		tok, err := c.Renew(ctx(t), "video")
		if err == nil && tok.Token != "007v1" {
			err = fmt.Errorf("renewed token %q, want 007v1", tok.Token)
		}
		got <- err
	}()
	if name := <-f.Src.Renews(); name != "video" {
		t.Fatalf("engine asked to renew %q", name)
	}
	f.Set("video", "007v1")
	if err := <-got; err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if _, err := c.Renew(ctx(t), "nope"); !client.IsCode(err, socketproto.CodeNotFound) {
		t.Errorf("Renew unknown: %v, want not_found", err)
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Renew(short, "video"); err != context.DeadlineExceeded {
		t.Errorf("Renew with no new token: %v, want the context's deadline", err)
	}
}

func TestWatch(t *testing.T) {
	f := serve(t, "")
	f.Set("video", "007v0")
	f.Set("signal", "007s0")
	c, err := client.Dial(f.Srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Watch(ctx(t), "nope"); !client.IsCode(err, socketproto.CodeNotFound) {
		t.Fatalf("Watch unknown name: %v, want not_found", err)
	}
	wctx, cancel := context.WithCancel(ctx(t))
	ch, err := c.Watch(wctx, "video")
	if err != nil {
		t.Fatal(err)
	}
	expectWatching(t, ch, "video")
	expectToken(t, ch, "video", "007v0")
	f.Set("signal", "007s1") // not watched
	for i := 1; i <= 5; i++ {
		f.Set("video", fmt.Sprintf("007v%d", i))
	}
	f.Src.Emit(agent.EventWillExpire, "video")
	for i := 1; i <= 5; i++ {
		expectToken(t, ch, "video", fmt.Sprintf("007v%d", i))
	}
	if ev := next(t, ch); ev.Kind != client.EventWillExpire || ev.Token.ExpiresIn != time.Hour || ev.Token.KID != "primary" {
		t.Fatalf("got %+v, want will_expire", ev)
	}
	cancel()
	for range ch { // the channel closes once the context ends
	}
}

// TestWatchReconnects: the agent restarts; the watch reconnects, says
// so, and delivers the current token of the new agent.
func TestWatchReconnects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	a := serve(t, path)
	a.Set("video", "007v0")
	c, err := client.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Watch(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	expectWatching(t, ch)
	expectToken(t, ch, "video", "007v0")
	if _, err := c.Get(ctx(t), "video"); err != nil {
		t.Fatal(err)
	}

	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Kind != client.EventDisconnected || ev.Err == nil {
		t.Fatalf("got %+v, want disconnected", ev)
	}
	if _, err := c.Get(ctx(t), "video"); err == nil {
		t.Fatal("Get with the agent down succeeded")
	}

	b := serve(t, path) // the agent is back, with what it persisted and a renewal
	b.Set("video", "007v0")
	expectWatching(t, ch)
	expectToken(t, ch, "video", "007v0")
	b.Set("video", "007v1")
	expectToken(t, ch, "video", "007v1")
	// The request connection redials too.
	if tok, err := c.Get(ctx(t), "video"); err != nil || tok.Token != "007v1" {
		t.Fatalf("Get after restart = %+v, %v", tok, err)
	}
}

func TestDialNoAgent(t *testing.T) {
	if _, err := client.Dial(filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Fatal("Dial succeeded with no agent")
	}
}

// TestRefused: a connection the agent refuses (here: too many clients;
// a disallowed uid gets the same kind of line) reports the agent's code.
func TestRefused(t *testing.T) {
	src := sockettest.NewSource("cam-42", nil)
	srv, _ := sockettest.Serve(t, socket.Config{MaxClients: 1}, src)
	busy, err := client.Dial(srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := busy.Status(ctx(t)); err != nil { // holds the one slot
		t.Fatal(err)
	}
	c, err := client.Dial(srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Status(ctx(t)); !client.IsCode(err, socketproto.CodeTooManyClients) {
		t.Fatalf("Status past max clients: %v, want too_many_clients", err)
	}
	if _, err := c.Watch(ctx(t)); !client.IsCode(err, socketproto.CodeTooManyClients) {
		t.Fatalf("Watch past max clients: %v, want too_many_clients", err)
	}
}
