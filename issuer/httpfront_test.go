package issuer

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawExchange writes req on a fresh connection to addr and returns the
// answer, read as net/http's client reads one.
func rawExchange(t *testing.T, addr, req string) (*http.Response, map[string]any) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer res.Body.Close()
	var body map[string]any
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("answer %d is not JSON: %q", res.StatusCode, b)
	}
	return res, body
}

func errorMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// What fasthttp cannot read gets the API's error shape, naming the
// problem, and the connection is closed.
func TestFrontUnreadableRequests(t *testing.T) {
	_, srv := httpService(t)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, c := range []struct {
		name, req string
		status    int
		says      string
	}{
		{"headers too large", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", frontHeaderBytes) + "\r\n\r\n",
			http.StatusRequestHeaderFieldsTooLarge, "headers over 16384 bytes"},
		{"body too large", "POST /getToken HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" +
			strings.Repeat("a", 100000), http.StatusBadRequest, "body: over 16384 bytes"},
		{"malformed request line", "GET\r\n\r\n", http.StatusBadRequest, "malformed request"},
		{"bad content length", "POST /getToken HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n", http.StatusBadRequest, "malformed request"},
		{"broken header with a key", "GET /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keyCam + "\r\nBroken\r\n\r\n",
			http.StatusBadRequest, "malformed request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, body := rawExchange(t, addr, c.req)
			if strings.Contains(errorMessage(body), keyCam) {
				t.Fatalf("the answer quotes the request's API key: %v", body)
			}
			if res.StatusCode != c.status || !strings.Contains(errorMessage(body), c.says) {
				t.Fatalf("%d %v, want %d saying %q", res.StatusCode, body, c.status, c.says)
			}
			if !res.Close {
				t.Error("the connection stays open after an unreadable request")
			}
		})
	}
	// The front still serves.
	if code, _ := get(t, srv, "/healthz", ""); code != http.StatusOK {
		t.Fatalf("healthz after the bad requests: %d", code)
	}
}

// A handler that panics gets 500 in the API's shape and the
// issuer goes on serving (fasthttp, unlike net/http, would not recover).
// The answer keeps net/http's details: headers with several values, a
// Content-Type sniffed when the handler set none, no body to HEAD.
func TestFrontHandlerContract(t *testing.T) {
	svc, _ := httpService(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.HandleFunc("/plain", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Add("Vary", "Origin")
		w.Header().Add("Vary", "Accept")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "<html>hi</html>")
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := svc.newFront(l, mux)
	done := make(chan error, 1)
	go func() { done <- f.serve() }()
	defer func() {
		if err := f.stop(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	addr := l.Addr().String()
	res, body := rawExchange(t, addr, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if res.StatusCode != http.StatusInternalServerError || errorMessage(body) != "internal error" {
		t.Fatalf("panic: %d %v", res.StatusCode, body)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	r, err := client.Get("http://" + addr + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusAccepted || string(b) != "<html>hi</html>" ||
		strings.Join(r.Header.Values("Vary"), ",") != "Origin,Accept" || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("answer %d %q, headers %v", r.StatusCode, b, r.Header)
	}
	r, err = client.Head("http://" + addr + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusAccepted || len(b) != 0 {
		t.Fatalf("HEAD: %d with %d bytes", r.StatusCode, len(b))
	}
}

// A front stopped before it served closes its listener itself: serve
// then returns at once instead of accepting forever (fasthttp's Shutdown
// closes only a listener Serve has taken).
func TestFrontStoppedBeforeServe(t *testing.T) {
	svc, _ := httpService(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := svc.newFront(l, svc.Handler())
	if err := f.stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.serve() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve after stop did not return")
	}
}
