package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"agoratokens/wire"
)

// The HTTP listener's front: fasthttp reads requests and writes answers,
// and Handler (net/http's interface, so tests and the routes stay plain
// Go) decides them. On a 2-core machine shared with the load generator,
// net/http spent 18.8 µs of CPU per request before any handler ran (a
// handler answering a constant, wrk -t2 -c50) and the tail of the token
// API went to 28 ms at p99; fasthttp spends 9.0 µs, with one goroutine
// per connection and no read in the background. docs/http-api.md has the
// figures.
//
// Every request but the fleet page's event stream is answered from a
// buffer: the handler runs on the connection's goroutine and must not
// wait on r.Context() (it is not the server's). The event stream runs
// through fasthttpadaptor, which flushes and ends with the server.

// The listener's limits: net/http's as serve had them, but for the
// header timeout, which now bounds the whole request (bodies are 16 KiB).
const (
	frontReadTimeout  = 10 * time.Second // a whole request, headers and body
	frontWriteTimeout = 30 * time.Second // an answer; a stream extends it at each event
	frontIdleTimeout  = 2 * time.Minute
	frontHeaderBytes  = 16 << 10
	// frontMaxConns bounds the connections served at once; past it a
	// new connection gets 503.
	frontMaxConns = 16 << 10
	// fleetEventsPath is the one answer that streams.
	fleetEventsPath = "/fleet/api/events"
)

// frontServer is the HTTP listener's server. Its handlers are reached
// through to, which stop clears: fasthttp's idle-worker sweeper keeps a
// stopped server for up to 10 s, and the service (a registry of 10,000
// devices, say) need not stay with it.
type frontServer struct {
	*fasthttp.Server
	ln net.Listener
	to atomic.Pointer[frontHandlers]
}

type frontHandlers struct {
	serve  fasthttp.RequestHandler
	failed func(*fasthttp.RequestCtx, error)
}

// newFront returns the server for the HTTP listener ln, serving h.
func (s *Service) newFront(ln net.Listener, h http.Handler) *frontServer {
	stream := fasthttpadaptor.NewFastHTTPHandler(h)
	buffered := frontHandler(h)
	f := &frontServer{ln: ln}
	f.to.Store(&frontHandlers{
		serve: func(ctx *fasthttp.RequestCtx) {
			defer s.frontRecover(ctx)
			if string(ctx.Path()) == fleetEventsPath {
				stream(ctx)
				return
			}
			buffered(ctx)
		},
		failed: s.frontError,
	})
	f.Server = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if to := f.to.Load(); to != nil {
				to.serve(ctx)
				return
			}
			ctx.SetConnectionClose()
			ctx.SetStatusCode(http.StatusServiceUnavailable)
		},
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			if to := f.to.Load(); to != nil {
				to.failed(ctx, err)
				return
			}
			ctx.SetStatusCode(http.StatusServiceUnavailable)
		},
		ReadTimeout:                  frontReadTimeout,
		WriteTimeout:                 frontWriteTimeout,
		IdleTimeout:                  frontIdleTimeout,
		ReadBufferSize:               frontHeaderBytes,
		MaxRequestBodySize:           maxBodyBytes,
		Concurrency:                  frontMaxConns,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		// fasthttp's errors would otherwise quote the request's bytes,
		// an Authorization header included.
		SecureErrorLogMessage: true,
		Logger:                frontLogger{s.log},
	}
	return f
}

// serve serves the listener until stop; it returns nil after stop.
func (f *frontServer) serve() error { return f.Serve(f.ln) }

// stop shuts the server down (connections close, an event stream ends)
// within ctx, then lets go of the service. It closes the listener itself
// too: fasthttp closes only a listener Serve has already taken, and a
// stop that came first would leave a later serve accepting.
func (f *frontServer) stop(ctx context.Context) error {
	err := f.ShutdownWithContext(ctx)
	if cerr := f.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	f.to.Store(nil)
	return err
}

// frontRecover answers 500 for a handler that panicked, as net/http
// would have, instead of letting it end the issuer.
func (s *Service) frontRecover(ctx *fasthttp.RequestCtx) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		ctx.SetConnectionClose()
		return
	}
	s.log.Error("http handler panicked", "path", clip(string(ctx.Path())), "panic", clip(fmt.Sprint(v)))
	ctx.Response.Reset()
	ctx.SetConnectionClose()
	writeFrontError(ctx, &apiError{status: http.StatusInternalServerError, code: wire.CodeUnavailable,
		message: "internal error"})
}

// frontError answers a request fasthttp could not read, in the API's
// error shape.
func (s *Service) frontError(ctx *fasthttp.RequestCtx, err error) {
	var e *apiError
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = badField("body", "over %d bytes", maxBodyBytes)
	case errors.As(err, &small):
		e = &apiError{status: http.StatusRequestHeaderFieldsTooLarge, code: wire.CodeInvalidRequest,
			message: fmt.Sprintf("request line and headers over %d bytes", frontHeaderBytes)}
	default:
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			e = &apiError{status: http.StatusRequestTimeout, code: wire.CodeInvalidRequest,
				message: fmt.Sprintf("request not read within %v", frontReadTimeout)}
		} else {
			e = &apiError{status: http.StatusBadRequest, code: wire.CodeInvalidRequest,
				message: "malformed request: " + clipErr(err)}
		}
	}
	s.metrics.endpoint("unreadable", e.result())
	s.log.Debug("http request unreadable", "status", e.status, "reason", e.message)
	writeFrontError(ctx, e)
}

func writeFrontError(ctx *fasthttp.RequestCtx, e *apiError) {
	f := acquireFront(ctx)
	defer releaseFront(f)
	writeAPIError(&f.w, e)
	f.w.commit()
}

// frontLogger takes fasthttp's own messages (a connection it could not
// serve) at debug level: a client can cause them.
type frontLogger struct{ log *slog.Logger }

func (l frontLogger) Printf(format string, args ...any) {
	l.log.Debug("http server", "msg", clip(fmt.Sprintf(format, args...)))
}

// frontRequest is what the front reuses for each request it hands to the
// handler: the request and its response writer.
type frontRequest struct {
	r http.Request
	w frontWriter
}

var frontPool = sync.Pool{New: func() any {
	return &frontRequest{r: http.Request{Header: make(http.Header)}, w: frontWriter{h: make(http.Header)}}
}}

func acquireFront(ctx *fasthttp.RequestCtx) *frontRequest {
	f := frontPool.Get().(*frontRequest)
	clear(f.w.h)
	f.w.ctx, f.w.status = ctx, 0
	return f
}

func releaseFront(f *frontRequest) {
	hdr := f.r.Header
	clear(hdr)
	f.r = http.Request{Header: hdr}
	f.w.ctx = nil
	frontPool.Put(f)
}

// frontHandler answers each request with h, from a buffer.
func frontHandler(h http.Handler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		f := acquireFront(ctx)
		defer releaseFront(f)
		if err := fasthttpadaptor.ConvertRequest(ctx, &f.r, true); err != nil {
			writeAPIError(&f.w, &apiError{status: http.StatusBadRequest, code: wire.CodeInvalidRequest,
				message: "request target: " + clipErr(err)})
		} else {
			h.ServeHTTP(&f.w, &f.r)
		}
		f.w.commit()
	}
}

// frontWriter is an http.ResponseWriter into a fasthttp response.
type frontWriter struct {
	ctx    *fasthttp.RequestCtx
	h      http.Header
	status int
}

func (w *frontWriter) Header() http.Header { return w.h }

func (w *frontWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *frontWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ctx.Write(b)
}

// commit moves the status and headers to the response, sniffing a
// missing Content-Type as net/http does.
func (w *frontWriter) commit() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	res := &w.ctx.Response
	res.SetStatusCode(w.status)
	for k, vs := range w.h {
		for _, v := range vs {
			res.Header.Add(k, v)
		}
	}
	if _, ok := w.h["Content-Type"]; !ok && len(res.Body()) > 0 {
		res.Header.SetContentType(http.DetectContentType(res.Body()))
	}
}
