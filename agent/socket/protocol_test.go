package socket

import (
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socketproto"
)

// TestEventNames: the engine's event kinds go on the wire as they are
// named, so they must be the protocol's event names.
func TestEventNames(t *testing.T) {
	for kind, want := range map[agent.EventKind]string{
		agent.EventToken:      socketproto.EventToken,
		agent.EventWillExpire: socketproto.EventWillExpire,
		agent.EventExpired:    socketproto.EventExpired,
	} {
		if string(kind) != want {
			t.Errorf("engine event %q goes on the wire as the protocol's %q", kind, want)
		}
	}
}

func TestAcceptDelay(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{1, 5 * time.Millisecond}, {2, 10 * time.Millisecond}, {8, 640 * time.Millisecond}, {9, time.Second}, {1000, time.Second}} {
		if got := acceptDelay(tt.n); got != tt.want {
			t.Errorf("acceptDelay(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}
