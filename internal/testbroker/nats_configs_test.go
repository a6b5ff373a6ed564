package testbroker

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"agoratokens/issuer/natsauth"
	"agoratokens/wire"
)

// configs/nats/node.conf, run by three nodes as docs/broker.md says (one
// file, the environment naming the node), forms a cluster that takes the
// devices of the included nats-auth.conf over MQTT: a device's request on
// node 1 reaches the issuer on node 3 and the issuer's reply comes back
// to the device's QoS 1 subscription; when node 1 is killed the device
// takes its session over on node 2 (the session stream is replicated).
func TestShippedNATSConfig(t *testing.T) {
	const pw, issuerPW = "secret-0123456789abcdef0123456789", "issuer-0123456789abcdef012345678"
	hash, err := natsauth.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	ih, err := natsauth.Hash(issuerPW)
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(t.TempDir(), "nats-auth.conf")
	top := wire.NewTopics("")
	if _, err := natsauth.Write(auth, top, &natsauth.User{Name: "issuer", Hash: ih}, []string{"dev-1"}, natsauth.Hashes{"dev-1": hash}); err != nil {
		t.Fatal(err)
	}
	c := StartNATS(t, NATSOptions{Nodes: 3, Shipped: "../../configs/nats/node.conf", AuthFile: auth})
	dev := ClientOptions{ClientID: "dev-1", Username: "dev-1", Password: pw}
	c.WaitMQTT(dev)
	if _, err := TryConnect(t, c.Nodes[0].MQTTURL, ClientOptions{ClientID: "dev-1", Username: "dev-1", Password: "wrong"}); err == nil {
		t.Fatal("a wrong password logged in")
	}

	nc, err := nats.Connect(c.Nodes[2].ClientURL, nats.UserInfo("issuer", issuerPW))
	if err != nil {
		t.Fatalf("issuer login on node 3: %v", err)
	}
	defer nc.Close()
	reqs, err := nc.SubscribeSync(natsauth.Subject(top.AllReqs()))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	d := Connect(t, c.Nodes[0].MQTTURL, dev)
	tokens := Subscribe(t, d, top.Token("dev-1"))
	Publish(t, d, top.Req("dev-1"), false, []byte("req"))
	if m, err := reqs.NextMsg(20 * time.Second); err != nil || string(m.Data) != "req" {
		t.Fatalf("the issuer on node 3 got %v, %v", m, err)
	}
	if err := nc.Publish(natsauth.Subject(top.Token("dev-1")), []byte("reply")); err != nil {
		t.Fatal(err)
	}
	if m := Receive(t, tokens, 20*time.Second); string(m.Payload()) != "reply" {
		t.Fatalf("the device got %q", m.Payload())
	}

	// Until JetStream has moved the MQTT streams' leaders off the dead
	// node (seconds) the takeover times out; a device retries as the
	// agent does. The one-replica consumer may have been on the dead
	// node: the takeover still goes through (4 to 13 s here).
	c.Nodes[0].Stop()
	killed := time.Now()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		_, err := TryConnect(t, c.Nodes[1].MQTTURL, dev)
		if err == nil {
			break
		}
		if time.Since(killed) > 60*time.Second {
			t.Fatalf("dev-1 cannot take its session over on node 2 with node 1 dead: %v", err)
		}
		time.Sleep(wait) // the device's retry backoff, not a wait for a condition
	}
	t.Logf("session taken over on node 2 %v after node 1 died", time.Since(killed).Round(time.Millisecond))
}
