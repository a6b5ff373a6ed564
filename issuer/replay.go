package issuer

import (
	"sync"
	"time"
)

// replayCache remembers the reply to each (device, request id) for a
// window, so that a device retrying a request (its PUBACK or our reply
// was lost) gets the same tokens back instead of a second signing. A
// retry that arrives while the first is still being handled waits for
// it.
type replayCache struct {
	mu      sync.Mutex
	window  time.Duration
	max     int
	entries map[string]*replayEntry
	swept   time.Time
}

type replayEntry struct {
	done    chan struct{} // closed when reply is set or the entry dropped
	reply   []byte        // nil when the first attempt failed
	expires time.Time
}

func newReplayCache(window time.Duration, max int) *replayCache {
	return &replayCache{window: window, max: max, entries: map[string]*replayEntry{}}
}

func replayKey(device, id string) string { return device + "/" + id }

// begin looks key up at now. owner is true when the caller is the first
// and must call finish; otherwise the caller waits on e.done and sends
// e.reply (if not nil).
func (c *replayCache) begin(key string, now time.Time) (e *replayEntry, owner bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swept) > c.window/2 {
		c.swept = now
		for k, e := range c.entries {
			if now.After(e.expires) {
				delete(c.entries, k)
			}
		}
	}
	if e, ok := c.entries[key]; ok && !now.After(e.expires) {
		return e, false
	}
	e = &replayEntry{done: make(chan struct{}), expires: now.Add(c.window)}
	if len(c.entries) < c.max {
		c.entries[key] = e
	}
	return e, true
}

// finish records the reply for key. A nil reply (the attempt failed and
// may be retried) drops the entry so that the next attempt runs anew.
func (c *replayCache) finish(key string, e *replayEntry, reply []byte) {
	c.mu.Lock()
	e.reply = reply
	if reply == nil && c.entries[key] == e {
		delete(c.entries, key)
	}
	c.mu.Unlock()
	close(e.done)
}
