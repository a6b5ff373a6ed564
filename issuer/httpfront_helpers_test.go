package issuer

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
)

// testFront is svc's Handler served through the listener's front
// (httpfront.go) on a loopback port, as serve serves it: the HTTP tests
// see what a client of serve sees.
type testFront struct {
	URL    string
	client *http.Client
	close  func()
}

func (f *testFront) Client() *http.Client { return f.client }
func (f *testFront) Close()               { f.close() }

func serveFront(t testing.TB, svc *Service) *testFront {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := svc.newFront(l, svc.Handler())
	done := make(chan error, 1)
	go func() { done <- fs.serve() }()
	tr := &http.Transport{}
	f := &testFront{URL: "http://" + l.Addr().String(), client: &http.Client{Transport: tr}}
	var once sync.Once
	f.close = func() {
		once.Do(func() {
			tr.CloseIdleConnections()
			if err := fs.stop(context.Background()); err != nil {
				t.Errorf("front shutdown: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("front serve: %v", err)
			}
		})
	}
	t.Cleanup(f.close)
	return f
}
