package natsauth

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"agoratokens/internal/testbroker"
	"agoratokens/wire"
)

func TestSubjectMapping(t *testing.T) {
	for topic, subject := range map[string]string{
		"agora/v1/devices/cam-1/req":   "agora.v1.devices.cam-1.req",
		"agora/v1/devices/cam.1/req":   "agora.v1.devices.cam//1.req",
		"agora/v1/devices/+/req":       "agora.v1.devices.*.req",
		"agora/v1/#":                   "agora.v1.>",
		"site/a.b/devices/x.y.z/token": "site.a//b.devices.x//y//z.token",
	} {
		if got := Subject(topic); got != subject {
			t.Errorf("Subject(%q) = %q, want %q", topic, got, subject)
		}
		if !strings.ContainsAny(topic, "+#") {
			if got := Topic(subject); got != topic {
				t.Errorf("Topic(%q) = %q, want %q", subject, got, topic)
			}
		}
	}
}

const (
	issuerPW = "issuer-password-0123456789abcdef"
	devPW    = "device-secret-0123456789abcdefgh"
)

// authCluster starts one nats-server that includes a fragment Write made
// for the issuer and devices dev-a and dev-b (same secret each).
func authCluster(t *testing.T) *testbroker.NATSCluster {
	t.Helper()
	file := filepath.Join(t.TempDir(), "nats-auth.conf")
	h := Hashes{}
	for _, d := range []string{"dev-a", "dev-b"} {
		hash, err := Hash(devPW)
		if err != nil {
			t.Fatal(err)
		}
		h[d] = hash
	}
	ih, err := Hash(issuerPW)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Save(HashesFile(file)); err != nil {
		t.Fatal(err)
	}
	back, err := LoadHashes(HashesFile(file))
	if err != nil || len(back) != 2 {
		t.Fatalf("LoadHashes: %v %v", back, err)
	}
	missing, err := Write(file, wire.NewTopics(""), &User{Name: "issuer", Hash: ih}, []string{"dev-a", "dev-b", "dev-c"}, back)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 1 || missing[0] != "dev-c" {
		t.Fatalf("missing = %q, want dev-c (no hash)", missing)
	}
	c := testbroker.StartNATS(t, testbroker.NATSOptions{AuthFile: file})
	c.WaitMQTT(testbroker.ClientOptions{ClientID: "dev-a", Username: "dev-a", Password: devPW})
	return c
}

// Device A cannot subscribe to B's token topic nor publish on B's
// request topic: nats-server's permissions refuse it, as mosquitto's
// ACL does. A's own topics work, and A cannot log in on the NATS port.
func TestDevicePermissions(t *testing.T) {
	c := authCluster(t)
	top := wire.NewTopics("")
	nc, err := nats.Connect(c.Nodes[0].ClientURL, nats.UserInfo("issuer", issuerPW))
	if err != nil {
		t.Fatalf("issuer login: %v", err)
	}
	defer nc.Close()
	reqs, err := nc.SubscribeSync(Subject(top.AllReqs()))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	a := testbroker.Connect(t, c.Nodes[0].MQTTURL, testbroker.ClientOptions{ClientID: "dev-a", Username: "dev-a", Password: devPW})
	if _, ok, err := testbroker.TrySubscribe(t, a, top.Token("dev-b")); ok || err != nil {
		t.Fatalf("dev-a subscribed to dev-b's token topic (ok %v, err %v)", ok, err)
	}
	if _, ok, _ := testbroker.TrySubscribe(t, a, "$MQTT/sub/#"); ok {
		t.Fatal("dev-a subscribed to the MQTT delivery subjects")
	}
	mine, ok, err := testbroker.TrySubscribe(t, a, top.Token("dev-a"))
	if !ok || err != nil {
		t.Fatalf("dev-a cannot subscribe to its own token topic: %v", err)
	}
	// Published in this order on one connection: if B's got through it
	// would arrive first.
	testbroker.Publish(t, a, top.Req("dev-b"), false, []byte("forged"))
	testbroker.Publish(t, a, top.Req("dev-a"), false, []byte("mine"))
	m, err := reqs.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("the issuer got no request: %v", err)
	}
	if m.Subject != Subject(top.Req("dev-a")) || string(m.Data) != "mine" {
		t.Fatalf("the issuer got %q on %s, want dev-a's own request", m.Data, m.Subject)
	}
	c.Nodes[0].WaitLog(`Publish Violation - User "dev-a", Subject "agora.v1.devices.dev-b.req"`, 10*time.Second)

	// The issuer's reply on A's token subject reaches A's QoS 1 subscription.
	if err := nc.Publish(Subject(top.Token("dev-a")), []byte("token")); err != nil {
		t.Fatal(err)
	}
	if got := testbroker.Receive(t, mine, 10*time.Second); string(got.Payload()) != "token" {
		t.Fatalf("dev-a got %q", got.Payload())
	}

	// A device's login works only over MQTT.
	if _, err := nats.Connect(c.Nodes[0].ClientURL, nats.UserInfo("dev-a", devPW)); err == nil {
		t.Fatal("dev-a logged in on the NATS port")
	}
	// A wrong secret is refused.
	if _, err := testbroker.TryConnect(t, c.Nodes[0].MQTTURL, testbroker.ClientOptions{ClientID: "dev-b", Username: "dev-b", Password: "wrong"}); err == nil {
		t.Fatal("a wrong secret logged in")
	}
	var _ mqtt.Client = a
}

// A device id with a "." cannot be a NATS device: nats-server 2.9's
// MQTT listener refuses "." in topics, so Write refuses the id with a
// clear error rather than write a user that could never subscribe (and
// the server does refuse such a topic).
func TestDottedDeviceID(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nats-auth.conf")
	hash, err := Hash(devPW)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Write(file, wire.NewTopics(""), nil, []string{"cam.1"}, Hashes{"cam.1": hash})
	if err == nil || !strings.Contains(err.Error(), `"cam.1"`) || !strings.Contains(err.Error(), "use - or _") {
		t.Fatalf("Write(cam.1) = %v, want a refusal naming the id", err)
	}
	c := authCluster(t)
	a := testbroker.Connect(t, c.Nodes[0].MQTTURL, testbroker.ClientOptions{ClientID: "dev-a", Username: "dev-a", Password: devPW})
	if _, ok, _ := testbroker.TrySubscribe(t, a, "agora/v1/devices/dev.a/token"); ok {
		t.Fatal("nats-server took a topic with a \".\": the restriction can go")
	}
	c.Nodes[0].WaitLog("'.' not supported for MQTT topics", 10*time.Second)
}

// TestFleetStatePermissions: the fleet state NATS keeps as MQTT
// retained messages. The issuer's user may log in over MQTT, publish
// the campaign and its replica status retained and read them back (what
// the replicas and the fleet, rotate and certificate commands do); a
// device may neither publish a campaign or a replica status nor read
// another device's status.
func TestFleetStatePermissions(t *testing.T) {
	c := authCluster(t)
	top := wire.NewTopics("")
	a := testbroker.Connect(t, c.Nodes[0].MQTTURL, testbroker.ClientOptions{ClientID: "dev-a", Username: "dev-a", Password: devPW})
	testbroker.Publish(t, a, top.Campaign(), true, []byte(`{"forged":true}`))
	c.Nodes[0].WaitLog(`Publish Violation - User "dev-a", Subject "agora.v1.issuer.campaign"`, 10*time.Second)
	testbroker.Publish(t, a, top.ReplicaStatus("x"), true, []byte(`{"forged":true}`))
	c.Nodes[0].WaitLog(`Publish Violation - User "dev-a", Subject "agora.v1.issuer.replicas.x"`, 10*time.Second)
	if _, ok, _ := testbroker.TrySubscribe(t, a, top.AllStatuses()); ok {
		t.Fatal("dev-a subscribed to every device's status")
	}
	testbroker.Publish(t, a, top.Status("dev-a"), true, []byte(`{"state":"online"}`))

	iss := testbroker.Connect(t, c.Nodes[0].MQTTURL, testbroker.ClientOptions{ClientID: "issuer-fleet", Username: "issuer", Password: issuerPW})
	testbroker.Publish(t, iss, top.Campaign(), true, []byte(`{"id":"c1"}`))
	testbroker.Publish(t, iss, top.ReplicaStatus("r1"), true, []byte(`{"state":"online"}`))
	for topic, want := range map[string]string{
		top.Campaign():          `{"id":"c1"}`,
		top.ReplicaStatus("r1"): `{"state":"online"}`,
		top.Status("dev-a"):     `{"state":"online"}`,
	} {
		ch, ok, err := testbroker.TrySubscribe(t, iss, topic)
		if !ok || err != nil {
			t.Fatalf("the issuer cannot subscribe to %s over MQTT: %v", topic, err)
		}
		if got := testbroker.Receive(t, ch, 10*time.Second); string(got.Payload()) != want || !got.Retained() {
			t.Fatalf("%s: got %q (retained %v), want %q retained", topic, got.Payload(), got.Retained(), want)
		}
	}
}
