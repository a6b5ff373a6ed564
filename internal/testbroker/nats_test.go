package testbroker

import (
	"testing"
	"time"
)

// A three-node cluster: an MQTT message published on node 3 reaches an
// MQTT subscriber on node 1; a node killed and restarted serves again.
func TestNATSClusterRoutesMQTT(t *testing.T) {
	c := StartNATS(t, NATSOptions{Nodes: 3})
	sub := Connect(t, c.Nodes[0].MQTTURL, ClientOptions{})
	ch := Subscribe(t, sub, "agora/v1/devices/dev-1/token")
	pub := Connect(t, c.Nodes[2].MQTTURL, ClientOptions{})
	Publish(t, pub, "agora/v1/devices/dev-1/token", false, []byte("hello"))
	if m := Receive(t, ch, 20*time.Second); string(m.Payload()) != "hello" {
		t.Fatalf("got %q", m.Payload())
	}
	c.Nodes[2].Stop()
	if _, err := TryConnect(t, c.Nodes[2].MQTTURL, ClientOptions{}); err == nil {
		t.Fatal("a stopped node took an MQTT connection")
	}
	c.Nodes[2].Restart()
	pub = Connect(t, c.Nodes[2].MQTTURL, ClientOptions{})
	Publish(t, pub, "agora/v1/devices/dev-1/token", false, []byte("again"))
	// QoS 1 is at least once: a redelivered "hello" may come first.
	for {
		m := Receive(t, ch, 20*time.Second)
		if string(m.Payload()) == "again" {
			break
		}
		if string(m.Payload()) != "hello" {
			t.Fatalf("got %q", m.Payload())
		}
	}
}
