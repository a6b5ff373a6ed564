package broker

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"agoratokens/clock"
	"agoratokens/internal/testlog"
)

// TestMochiHandlerRedactsPackets: every way mochi logs a packet (by
// value, by pointer, in a group, bound with With) at debug level, as on
// its delivery-failure path, keeps topic and size and drops the payload.
func TestMochiHandlerRedactsPackets(t *testing.T) {
	var buf testlog.Buffer
	log := slog.New(newMochiHandler(buf.Logger().Handler(), clock.Real()))
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "agora/v1/devices/cam-1/token",
		PacketID: 7, Payload: []byte(`{"tokens":[{"token":"007SECRET"}]}`)}
	log.Debug("failed publishing packet", "error", "boom", "client", "cam-1", "packet", pk)
	log.Debug("failed publishing packet", "packet", &pk)
	log.Debug("grouped", slog.Group("g", "pk", pk, "raw", pk.Payload))
	log.With("pk", pk).Warn("error processing packet")
	text := buf.String()
	if strings.Contains(text, "SECRET") || strings.Contains(text, "48 48 55") {
		t.Fatalf("a payload is in the log:\n%s", text)
	}
	if n := strings.Count(text, "topic=agora/v1/devices/cam-1/token"); n != 4 || !strings.Contains(text, "payload_bytes=34") {
		t.Fatalf("packets are not summarized (%d):\n%s", n, text)
	}
}
