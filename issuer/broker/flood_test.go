package broker

import (
	"errors"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"agoratokens/clock"
	"agoratokens/internal/logthrottle"
	"agoratokens/internal/testlog"
)

// TestFloodHookDropsBeyondTheRate: a device's publishes beyond its burst
// are dropped (acknowledged, not delivered) until time refills its
// bucket; the service user is never limited; a reconnected client starts
// afresh; the drops are logged, throttled.
func TestFloodHookDropsBeyondTheRate(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_763_800_000, 0))
	var buf testlog.Buffer
	h := newFloodHook("issuer", clk, logthrottle.New(buf.Logger(), clk, 0, 0))
	client := func(user string) *mqtt.Client {
		cl := &mqtt.Client{ID: user}
		cl.Properties.Username = []byte(user)
		return cl
	}
	dev, svc := client("dev-1"), client("issuer")
	pk := packets.Packet{TopicName: "agora/v1/devices/dev-1/req", Payload: []byte("x")}
	passed := func(cl *mqtt.Client, n int) int {
		ok := 0
		for range n {
			_, err := h.OnPublish(cl, pk)
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, packets.CodeSuccessIgnore):
				t.Fatalf("OnPublish: %v, want an acknowledged drop", err)
			}
		}
		return ok
	}
	if n := passed(dev, 1000); n != devicePublishBurst {
		t.Fatalf("%d of 1000 at once passed, want the burst %d", n, devicePublishBurst)
	}
	clk.Advance(time.Second)
	if n := passed(dev, 1000); n != devicePublishRate {
		t.Fatalf("%d passed a second later, want %d", n, devicePublishRate)
	}
	if n := passed(svc, 1000); n != 1000 {
		t.Fatalf("the service user was limited: %d of 1000", n)
	}
	h.OnDisconnect(dev, nil, true)
	if n := passed(dev, devicePublishBurst); n != devicePublishBurst {
		t.Fatalf("a new connection starts with %d, want the burst", n)
	}
	if lines := strings.Count(buf.String(), "device publishes too fast"); lines == 0 || lines > logthrottle.DefaultBurst {
		t.Fatalf("%d log lines for %d drops", lines, 2000-devicePublishBurst-devicePublishRate)
	}
}
