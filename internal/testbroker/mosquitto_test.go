package testbroker

import (
	"strings"
	"testing"
	"time"
)

func TestMosquittoPubSub(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{})
	if !strings.HasPrefix(m.URL, "tcp://127.0.0.1:") || !strings.HasSuffix(m.URL, m.Addr) {
		t.Fatalf("URL %q does not match Addr %q", m.URL, m.Addr)
	}
	sub := Connect(t, m.URL, ClientOptions{})
	ch := Subscribe(t, sub, "t/#")
	pub := Connect(t, m.URL, ClientOptions{})
	Publish(t, pub, "t/1", false, []byte("hello"))
	got := Receive(t, ch, 5*time.Second)
	if got.Topic() != "t/1" || string(got.Payload()) != "hello" {
		t.Fatalf("got %q %q, want t/1 hello", got.Topic(), got.Payload())
	}
	if !strings.Contains(m.Log(), "running") {
		t.Fatalf("log lacks the startup line:\n%s", m.Log())
	}
}

func TestMosquittoUsersAndACL(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{
		Users: map[string]string{"alice": "a-secret", "bob": "b-secret"},
		ACL:   "pattern readwrite own/%u/#\n",
	})
	for _, tc := range []struct {
		name, user, pass string
		ok               bool
	}{
		{"right password", "alice", "a-secret", true},
		{"wrong password", "alice", "b-secret", false},
		{"unknown user", "carol", "a-secret", false},
		{"anonymous", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TryConnect(t, m.URL, ClientOptions{Username: tc.user, Password: tc.pass})
			if (err == nil) != tc.ok {
				t.Fatalf("connect error %v, want ok=%v", err, tc.ok)
			}
		})
	}

	alice := Connect(t, m.URL, ClientOptions{Username: "alice", Password: "a-secret"})
	bob := Connect(t, m.URL, ClientOptions{Username: "bob", Password: "b-secret"})
	ch := Subscribe(t, alice, "own/alice/#")
	// bob may not write alice's topics; his own marker after it proves
	// the refused message would have arrived first.
	Publish(t, bob, "own/alice/x", false, []byte("forged"))
	Publish(t, alice, "own/alice/x", false, []byte("real"))
	if got := Receive(t, ch, 5*time.Second); string(got.Payload()) != "real" {
		t.Fatalf("alice got %q, want only her own message", got.Payload())
	}
}

func TestMosquittoRestartKeepsPortAndRetained(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{Persistence: true})
	addr := m.Addr
	c := Connect(t, m.URL, ClientOptions{})
	Publish(t, c, "keep", true, []byte("v1"))
	// mosquitto writes its persistence file on a clean shutdown only, so
	// this test checks the port and that a fresh broker serves again.
	m.Restart()
	if m.Addr != addr {
		t.Fatalf("address changed from %s to %s", addr, m.Addr)
	}
	c2 := Connect(t, m.URL, ClientOptions{})
	ch := Subscribe(t, c2, "after")
	Publish(t, c2, "after", false, []byte("x"))
	Receive(t, ch, 5*time.Second)
	if n := strings.Count(m.Log(), " running"); n != 2 {
		t.Fatalf("log shows %d starts, want 2", n)
	}
}

func TestMosquittoStopRefusesConnections(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{})
	m.Stop()
	if _, err := TryConnect(t, m.URL, ClientOptions{}); err == nil {
		t.Fatal("connected to a stopped broker")
	}
	m.Stop() // stopping twice is harmless
}

func TestMosquittoReloadPicksUpUsers(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{Users: map[string]string{"alice": "a-secret"}})
	if _, err := TryConnect(t, m.URL, ClientOptions{Username: "bob", Password: "b-secret"}); err == nil {
		t.Fatal("bob connected before he was added")
	}
	if err := writePasswordFile(m.Dir+"/passwd", map[string]string{"alice": "a-secret", "bob": "b-secret"}); err != nil {
		t.Fatal(err)
	}
	m.Reload()
	Connect(t, m.URL, ClientOptions{Username: "bob", Password: "b-secret"})
}
