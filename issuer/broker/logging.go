package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"

	"github.com/mochi-mqtt/server/v2/packets"

	"agoratokens/clock"
	"agoratokens/internal/logthrottle"
)

// mochiHandler is the log handler the broker gives mochi. mochi logs
// whole packets: a refused PUBLISH at warn level and a failed delivery
// at debug level, payload and all, and a failed delivery of a token
// reply would put the token in the log. This handler never lets a
// payload through: a packet becomes its type, topic, client-side packet
// id and size. It also names mochi's message-less listener errors, logs
// a connection closed at shutdown at debug level (it is not a problem),
// and throttles every line, since a client can trigger each of them.
type mochiHandler struct {
	inner slog.Handler
	gate  *logthrottle.Gate
}

func newMochiHandler(inner slog.Handler, clk clock.Clock) *mochiHandler {
	return &mochiHandler{inner: inner, gate: logthrottle.NewGate(clk, 0, 0)}
}

// Enabled reports whether the wrapped handler logs at level.
func (h *mochiHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// WithAttrs redacts the attributes and adds them.
func (h *mochiHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = redact(a)
	}
	return &mochiHandler{inner: h.inner.WithAttrs(out), gate: h.gate}
}

// WithGroup opens a group.
func (h *mochiHandler) WithGroup(name string) slog.Handler {
	return &mochiHandler{inner: h.inner.WithGroup(name), gate: h.gate}
}

// Handle rewrites one of mochi's records.
func (h *mochiHandler) Handle(ctx context.Context, r slog.Record) error {
	attrs := make([]slog.Attr, 0, r.NumAttrs())
	var err error
	r.Attrs(func(a slog.Attr) bool {
		a = redact(a)
		if e, ok := a.Value.Any().(error); ok && err == nil {
			err = e
		}
		attrs = append(attrs, a)
		return true
	})
	msg, level := r.Message, r.Level
	if msg == "" { // the listener's: a client's connection ended
		switch {
		case errors.Is(err, net.ErrClosed):
			msg, level = "client connection closed by the broker", slog.LevelDebug
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
			// A device that lost power or its network: routine.
			msg, level = "client connection ended without a DISCONNECT", slog.LevelInfo
		default:
			msg = "client connection failed"
		}
		if !h.inner.Enabled(ctx, level) {
			return nil
		}
	}
	ok, suppressed := h.gate.Allow(msg)
	if !ok {
		return nil
	}
	out := slog.NewRecord(r.Time, level, msg+h.gate.Suffix(suppressed), r.PC)
	out.AddAttrs(attrs...)
	return h.inner.Handle(ctx, out)
}

// redact replaces a packet (or any byte slice) in an attribute with what
// may be logged of it.
func redact(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindGroup:
		g := a.Value.Group()
		out := make([]slog.Attr, len(g))
		for i, x := range g {
			out[i] = redact(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
	default:
		return a
	}
	switch v := a.Value.Any().(type) {
	case packets.Packet:
		return slog.Attr{Key: a.Key, Value: packetValue(&v)}
	case *packets.Packet:
		if v == nil {
			return a
		}
		return slog.Attr{Key: a.Key, Value: packetValue(v)}
	case []byte:
		return slog.Int(a.Key+"_bytes", len(v))
	}
	return a
}

// packetValue is what the log may say about a packet.
func packetValue(pk *packets.Packet) slog.Value {
	typ, ok := packets.PacketNames[pk.FixedHeader.Type]
	if !ok {
		typ = "unknown"
	}
	attrs := []slog.Attr{slog.String("type", typ)}
	if pk.TopicName != "" {
		attrs = append(attrs, slog.String("topic", pk.TopicName))
	}
	if pk.PacketID != 0 {
		attrs = append(attrs, slog.Int("id", int(pk.PacketID)))
	}
	attrs = append(attrs, slog.Int("qos", int(pk.FixedHeader.Qos)), slog.Int("payload_bytes", len(pk.Payload)))
	return slog.GroupValue(attrs...)
}
