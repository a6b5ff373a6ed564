package testbroker

import (
	"testing"
	"time"

	"agoratokens/wire"
)

func TestMochiHarness(t *testing.T) {
	m := StartMochi(t, MochiOptions{Devices: []string{"dev-1"}, TopicRoot: "fleet/v1"})
	tp := wire.NewTopics("fleet/v1")
	svc := Connect(t, m.URL, m.Service())
	reqs := Subscribe(t, svc, tp.AllReqs())
	dev := Connect(t, m.URL, m.Device("dev-1"))
	Publish(t, dev, tp.Req("dev-1"), false, []byte(`{"v":1,"id":"a"}`))
	if got := Receive(t, reqs, 5*time.Second); got.Topic() != tp.Req("dev-1") {
		t.Fatalf("topic %q", got.Topic())
	}
	s := m.AddDevice("dev-2")
	Connect(t, m.URL, ClientOptions{ClientID: "dev-2", Username: "dev-2", Password: s})
	if _, err := TryConnect(t, m.URL, ClientOptions{Username: "dev-2", Password: "wrong"}); err == nil {
		t.Fatal("wrong secret accepted")
	}
	m.Stop()
	if _, err := TryConnect(t, m.URL, m.Device("dev-1")); err == nil {
		t.Fatal("connected to a stopped broker")
	}
}
