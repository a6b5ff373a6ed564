package testbroker

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/wire"
)

// The shipped mosquitto files, relative to this package.
var (
	shippedConf = filepath.Join("..", "..", "configs", "mosquitto", "mosquitto.conf")
	shippedACL  = filepath.Join("..", "..", "configs", "mosquitto", "acl")
)

// The shipped ACL's issuer users: one per replica, since the shipped
// config makes the user name the client id.
const (
	issuerUser  = "agora-issuer"
	issuerUser2 = "agora-issuer-2"
)

// startShipped runs mosquitto with the shipped mosquitto.conf and ACL,
// their paths moved into the test's temp dir.
func startShipped(t *testing.T, users map[string]string) *Mosquitto {
	t.Helper()
	raw, err := os.ReadFile(shippedConf)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for _, want := range []string{"listener 1883 127.0.0.1", "password_file /etc/mosquitto/agora/passwd",
		"acl_file /etc/mosquitto/agora/acl", "allow_anonymous false", "persistence_location /var/lib/mosquitto/", "log_dest syslog"} {
		if !strings.Contains(conf, want) {
			t.Fatalf("shipped mosquitto.conf lacks %q", want)
		}
	}
	acl, err := filepath.Abs(shippedACL)
	if err != nil {
		t.Fatal(err)
	}
	conf = strings.NewReplacer(
		"listener 1883 127.0.0.1", "listener {{PORT}} 127.0.0.1",
		"/etc/mosquitto/agora/passwd", "{{DIR}}/passwd",
		"/etc/mosquitto/agora/acl", acl,
		"/var/lib/mosquitto/", "{{DIR}}/",
		"log_dest syslog", "log_dest stderr\nlog_type information",
	).Replace(conf)
	if u, err := user.Current(); err == nil && u.Uid == "0" {
		conf += "\nuser root\n"
	}
	return StartMosquitto(t, MosquittoOptions{Users: users, Config: conf})
}

func TestShippedMosquittoACL(t *testing.T) {
	users := map[string]string{"dev-1": "secret-one-0123456789", "dev-2": "secret-two-0123456789", issuerUser: "issuer-secret-0123456789"}
	m := startShipped(t, users)
	tp := wire.NewTopics(wire.DefaultRoot)
	login := func(u string) ClientOptions { return ClientOptions{ClientID: u, Username: u, Password: users[u]} }

	if _, err := TryConnect(t, m.URL, ClientOptions{}); err == nil {
		t.Fatal("anonymous client connected")
	}
	if _, err := TryConnect(t, m.URL, ClientOptions{Username: "dev-1", Password: users["dev-2"]}); err == nil {
		t.Fatal("dev-1 connected with dev-2's password")
	}

	issuer := Connect(t, m.URL, login(issuerUser))
	reqs := Subscribe(t, issuer, tp.SharedReqs("issuers"))
	dev1 := Connect(t, m.URL, login("dev-1"))
	dev2 := Connect(t, m.URL, login("dev-2"))

	t.Run("device cannot publish another's request", func(t *testing.T) {
		// mosquitto acknowledges and drops a refused MQTT 3.1.1 publish;
		// the device's own request after it must be the first to arrive.
		Publish(t, dev1, tp.Req("dev-2"), false, []byte(`{"v":1,"id":"forged"}`))
		Publish(t, dev1, tp.Req("dev-1"), false, []byte(`{"v":1,"id":"own"}`))
		got := Receive(t, reqs, 5*time.Second)
		if got.Topic() != tp.Req("dev-1") || string(got.Payload()) != `{"v":1,"id":"own"}` {
			t.Fatalf("issuer got %s %s first", got.Topic(), got.Payload())
		}
	})

	t.Run("device cannot read another's token", func(t *testing.T) {
		own := Subscribe(t, dev1, tp.Token("dev-1"))
		var stolen []<-chan mqtt.Message
		for _, f := range []string{tp.Token("dev-2"), tp.Root + "/devices/+/token", "#"} {
			// mosquitto may refuse in the SUBACK or grant and never
			// deliver; either way nothing of dev-2's may arrive.
			ch, _, err := TrySubscribe(t, dev1, f)
			if err != nil {
				t.Fatal(err)
			}
			stolen = append(stolen, ch)
		}
		dev2Tokens := Subscribe(t, dev2, tp.Token("dev-2"))
		Publish(t, issuer, tp.Token("dev-2"), false, []byte(`{"v":1,"id":"for-2"}`))
		Receive(t, dev2Tokens, 5*time.Second) // delivered to its owner
		Publish(t, issuer, tp.Token("dev-1"), false, []byte(`{"v":1,"id":"for-1"}`))
		if got := Receive(t, own, 5*time.Second); string(got.Payload()) != `{"v":1,"id":"for-1"}` {
			t.Fatalf("dev-1 got %s", got.Payload())
		}
		for i, ch := range stolen {
			for len(ch) > 0 {
				if msg := <-ch; msg.Topic() != tp.Token("dev-1") {
					t.Fatalf("subscription %d delivered %s %s to dev-1", i, msg.Topic(), msg.Payload())
				}
			}
		}
	})

	t.Run("device cannot forge statuses", func(t *testing.T) {
		st := Subscribe(t, issuer, tp.Root+"/devices/+/status")
		Publish(t, dev1, tp.Status("dev-2"), true, []byte(`{"v":1,"state":"offline"}`))
		Publish(t, dev1, tp.IssuerStatus(), true, []byte(`{"v":1,"state":"offline"}`))
		Publish(t, dev1, tp.Status("dev-1"), true, []byte(`{"v":1,"state":"online"}`))
		if got := Receive(t, st, 5*time.Second); got.Topic() != tp.Status("dev-1") {
			t.Fatalf("issuer got a status on %s first", got.Topic())
		}
	})

	t.Run("device cannot read requests", func(t *testing.T) {
		ch, _, err := TrySubscribe(t, dev2, tp.AllReqs())
		if err != nil {
			t.Fatal(err)
		}
		mine := Subscribe(t, dev2, tp.Token("dev-2"))
		Publish(t, dev1, tp.Req("dev-1"), false, []byte(`{"v":1,"id":"again"}`))
		Receive(t, reqs, 5*time.Second)
		// Sent to dev-2 after the request: had the request been
		// delivered to dev-2, it would have come first.
		Publish(t, issuer, tp.Token("dev-2"), false, []byte(`{"v":1,"id":"marker"}`))
		Receive(t, mine, 5*time.Second)
		if len(ch) != 0 {
			t.Fatalf("dev-2 read %d requests", len(ch))
		}
	})
}

func TestShippedMosquittoSharedSubscription(t *testing.T) {
	users := map[string]string{"dev-1": "secret-one-0123456789", issuerUser: "issuer-secret-0123456789", issuerUser2: "issuer-two-secret-0123456789"}
	m := startShipped(t, users)
	tp := wire.NewTopics(wire.DefaultRoot)
	// Two replicas, each with its own user (and so its own client id).
	lost := make(chan string, 2)
	replica := func(user string) <-chan mqtt.Message {
		opts := Options(m.URL, ClientOptions{Username: user, Password: users[user]}).
			SetConnectionLostHandler(func(mqtt.Client, error) { lost <- user })
		c := mqtt.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(opTimeout) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", user, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return Subscribe(t, c, tp.SharedReqs("issuers"))
	}
	a := replica(issuerUser)
	b := replica(issuerUser2)
	dev := Connect(t, m.URL, ClientOptions{ClientID: "dev-1", Username: "dev-1", Password: users["dev-1"]})
	const n = 20
	for range n {
		Publish(t, dev, tp.Req("dev-1"), false, []byte(`{"v":1,"id":"r"}`))
	}
	var na, nb int
	for range n {
		select {
		case <-a:
			na++
		case <-b:
			nb++
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of %d", na+nb, n)
		}
	}
	if na == 0 || nb == 0 {
		t.Fatalf("not split: %d/%d", na, nb)
	}
	select {
	case user := <-lost:
		t.Fatalf("replica %s lost its connection", user)
	default:
	}
}

// A device that logs in with its own credentials but another device's
// client id must not take over that device's connection or session: the
// shipped config replaces every client id with the user name.
func TestShippedMosquittoClientIDIsTheUser(t *testing.T) {
	users := map[string]string{"cam-0042": "secret-42-0123456789", "cam-0043": "secret-43-0123456789", issuerUser: "issuer-secret-0123456789"}
	m := startShipped(t, users)
	tp := wire.NewTopics(wire.DefaultRoot)

	// The real cam-0043, as the agent connects: a persistent session.
	lost := make(chan error, 1)
	opts := Options(m.URL, ClientOptions{ClientID: "cam-0043", Username: "cam-0043", Password: users["cam-0043"]}).
		SetCleanSession(false).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err })
	real := mqtt.NewClient(opts)
	if tok := real.Connect(); !tok.WaitTimeout(opTimeout) || tok.Error() != nil {
		t.Fatalf("connect the real cam-0043: %v", tok.Error())
	}
	t.Cleanup(func() { real.Disconnect(0) })
	tokens := Subscribe(t, real, tp.Token("cam-0043"))

	// cam-0042 with cam-0043's client id and a clean session, which on a
	// broker that takes the id as given closes the real cam-0043's
	// connection and wipes its session.
	Connect(t, m.URL, ClientOptions{ClientID: "cam-0043", Username: "cam-0042", Password: users["cam-0042"]})

	issuer := Connect(t, m.URL, ClientOptions{Username: issuerUser, Password: users[issuerUser]})
	Publish(t, issuer, tp.Token("cam-0043"), false, []byte(`{"v":1,"id":"for-43"}`))
	select {
	case msg := <-tokens:
		if string(msg.Payload()) != `{"v":1,"id":"for-43"}` {
			t.Fatalf("the real cam-0043 got %s", msg.Payload())
		}
	case err := <-lost:
		t.Fatalf("the real cam-0043 lost its connection when cam-0042 connected with its client id: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the real cam-0043 got no reply on its subscription")
	}
	select {
	case err := <-lost:
		t.Fatalf("the real cam-0043 lost its connection: %v", err)
	default:
	}
	if !real.IsConnectionOpen() {
		t.Fatal("the real cam-0043 is no longer connected")
	}

	// Its session survived too: offline, it still gets what the issuer
	// sent meanwhile once it is back (as the agent, clean session off).
	real.Disconnect(0)
	Publish(t, issuer, tp.Token("cam-0043"), false, []byte(`{"v":1,"id":"while-away"}`))
	queued := make(chan mqtt.Message, 2)
	back := mqtt.NewClient(Options(m.URL, ClientOptions{ClientID: "cam-0043", Username: "cam-0043", Password: users["cam-0043"]}).
		SetCleanSession(false).
		SetDefaultPublishHandler(func(_ mqtt.Client, msg mqtt.Message) { queued <- msg }))
	if tok := back.Connect(); !tok.WaitTimeout(opTimeout) || tok.Error() != nil {
		t.Fatalf("reconnect the real cam-0043: %v", tok.Error())
	}
	t.Cleanup(func() { back.Disconnect(0) })
	// The reply it got before may come again first: Disconnect(0) can
	// close the connection before its PUBACK went out, and QoS 1 then
	// redelivers it.
	msg := Receive(t, queued, 10*time.Second)
	if string(msg.Payload()) == `{"v":1,"id":"for-43"}` {
		msg = Receive(t, queued, 10*time.Second)
	}
	if string(msg.Payload()) != `{"v":1,"id":"while-away"}` {
		t.Fatalf("the real cam-0043's session delivered %s", msg.Payload())
	}
}

// use_username_as_clientid is a listener setting in mosquitto 2.x: the
// shipped config must carry it under every listener, the commented-out
// TLS one included, so that enabling TLS keeps devices apart.
func TestShippedMosquittoEveryListenerTiesClientIDToUser(t *testing.T) {
	raw, err := os.ReadFile(shippedConf)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	listeners := 0
	for i, l := range lines {
		prefix, ok := "", strings.HasPrefix(l, "listener ")
		if !ok && strings.HasPrefix(l, "#listener ") {
			prefix, ok = "#", true
		}
		if !ok {
			continue
		}
		listeners++
		if i+1 >= len(lines) || lines[i+1] != prefix+"use_username_as_clientid true" {
			t.Errorf("line %d %q is not followed by %q", i+1, l, prefix+"use_username_as_clientid true")
		}
	}
	if listeners < 2 {
		t.Errorf("found %d listener lines, want the loopback and the TLS one", listeners)
	}
}
