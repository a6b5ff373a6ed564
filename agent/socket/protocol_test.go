package socket

import (
	"testing"

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
