package broker

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// A connection accepted but left to itself (as mochi leaves one it accepts
// while stopping) is closed with the listener: the client reads EOF at
// once instead of waiting for a CONNACK until its timeout.
func TestClosingListenerClosesWhatItAccepted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newClosingListener(ln)
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	dropped, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// A second connection, closed by its owner, leaves the set.
	other, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	served, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if err := served.Close(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	open := len(l.conns)
	l.mu.Unlock()
	if open != 1 {
		t.Fatalf("%d connections tracked after one was closed, want 1", open)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("client read %d bytes, err %v after the listener closed; want EOF", n, err)
	}
	if _, err := l.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
	_ = dropped.Close() // closed twice: harmless
}
