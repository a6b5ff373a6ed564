package broker

import (
	"math"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"agoratokens/clock"
	"agoratokens/internal/logthrottle"
)

// A device's publishes beyond this rate are dropped by the broker itself.
// An agent publishes a few messages a minute (a request per renewal, its
// status); the issuer's own rate limit (limits.rate) decides what it
// answers. This coarser guard keeps one flooding device from filling the
// issuer's queue in the broker (maxWritesPending), where the requests of
// every other device would be dropped with the flood.
const (
	devicePublishRate  = 20  // a second
	devicePublishBurst = 200 // at once
)

// floodHook drops what a device publishes beyond devicePublishRate. The
// service user is not limited. A QoS 1 publish dropped is still
// acknowledged, so that the device does not resend it.
type floodHook struct {
	mqtt.HookBase
	serviceUser string
	clk         clock.Clock
	log         *logthrottle.Logger

	mu      sync.Mutex
	buckets map[*mqtt.Client]*pubBucket
}

type pubBucket struct {
	tokens  float64
	last    time.Time
	dropped int
}

func newFloodHook(serviceUser string, clk clock.Clock, log *logthrottle.Logger) *floodHook {
	return &floodHook{serviceUser: serviceUser, clk: clk, log: log, buckets: map[*mqtt.Client]*pubBucket{}}
}

// ID names the hook for mochi.
func (h *floodHook) ID() string { return "agora-device-flood-guard" }

// Provides tells mochi which events the hook handles.
func (h *floodHook) Provides(b byte) bool { return b == mqtt.OnPublish || b == mqtt.OnDisconnect }

// OnPublish lets a publish through, or drops it (acknowledged, not
// delivered) when its client is over the rate.
func (h *floodHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || string(cl.Properties.Username) == h.serviceUser {
		return pk, nil
	}
	now := h.clk.Now()
	h.mu.Lock()
	b := h.buckets[cl]
	if b == nil {
		b = &pubBucket{tokens: devicePublishBurst, last: now}
		h.buckets[cl] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(devicePublishBurst, b.tokens+el*devicePublishRate)
		b.last = now
	}
	ok := b.tokens >= 1
	if ok {
		b.tokens--
	} else {
		b.dropped++
	}
	h.mu.Unlock()
	if ok {
		return pk, nil
	}
	h.log.Warn("device publishes too fast; the broker drops its messages", "user", safeUser(string(cl.Properties.Username)),
		"client", safeUser(cl.ID), "topic", pk.TopicName, "max_per_second", devicePublishRate)
	return pk, packets.CodeSuccessIgnore
}

// OnDisconnect forgets the client's bucket.
func (h *floodHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	delete(h.buckets, cl)
	h.mu.Unlock()
}
