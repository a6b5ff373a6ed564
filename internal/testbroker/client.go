package testbroker

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// opTimeout bounds a client operation in tests.
const opTimeout = 10 * time.Second

// ClientOptions configures a test MQTT client.
type ClientOptions struct {
	// ClientID defaults to a unique id.
	ClientID string
	Username string
	Password string
	// Will, when WillTopic is set, is the client's last will.
	WillTopic    string
	WillPayload  []byte
	WillRetained bool
}

var clientSeq atomic.Int64

// Options returns paho options for url and o, with automatic reconnects
// off so that a test sees a broker's refusal as it happens.
func Options(url string, o ClientOptions) *mqtt.ClientOptions {
	id := o.ClientID
	if id == "" {
		id = fmt.Sprintf("test-%d", clientSeq.Add(1))
	}
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).
		SetUsername(o.Username).SetPassword(o.Password).
		SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(opTimeout).SetCleanSession(true)
	if o.WillTopic != "" {
		opts.SetBinaryWill(o.WillTopic, o.WillPayload, 1, o.WillRetained)
	}
	return opts
}

// TryConnect connects a client, returning the broker's answer. A client
// that connected is disconnected at cleanup.
func TryConnect(t testing.TB, url string, o ClientOptions) (mqtt.Client, error) {
	t.Helper()
	c := mqtt.NewClient(Options(url, o))
	tok := c.Connect()
	if !tok.WaitTimeout(opTimeout) {
		return nil, fmt.Errorf("connect %s: no answer within %v", url, opTimeout)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

// Connect connects a client or fails the test.
func Connect(t testing.TB, url string, o ClientOptions) mqtt.Client {
	t.Helper()
	c, err := TryConnect(t, url, o)
	if err != nil {
		t.Fatalf("connect %s as %q: %v", url, o.Username, err)
	}
	return c
}

// Subscribe subscribes c to filter at QoS 1 and returns the messages it
// receives (buffered; a full buffer fails the test rather than block the
// client). It fails the test if the broker does not grant the
// subscription; use TrySubscribe to check a refusal.
func Subscribe(t testing.TB, c mqtt.Client, filter string) <-chan mqtt.Message {
	t.Helper()
	ch, granted, err := TrySubscribe(t, c, filter)
	if err != nil {
		t.Fatalf("subscribe %q: %v", filter, err)
	}
	if !granted {
		t.Fatalf("subscribe %q: the broker refused it", filter)
	}
	return ch
}

// TrySubscribe subscribes c to filter at QoS 1, reporting whether the
// broker granted it (an MQTT 3.1.1 SUBACK return code 0x80 means no).
func TrySubscribe(t testing.TB, c mqtt.Client, filter string) (<-chan mqtt.Message, bool, error) {
	t.Helper()
	ch := make(chan mqtt.Message, 1024)
	tok := c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case ch <- m:
		default:
			t.Errorf("subscription %q: message buffer full, dropping %q", filter, m.Topic())
		}
	})
	if !tok.WaitTimeout(opTimeout) {
		return nil, false, fmt.Errorf("no SUBACK within %v", opTimeout)
	}
	if err := tok.Error(); err != nil {
		return nil, false, err
	}
	// One filter, one result (paho keys it without a $share/ prefix).
	res := tok.(*mqtt.SubscribeToken).Result()
	if len(res) != 1 {
		return nil, false, fmt.Errorf("SUBACK has %d results, want 1", len(res))
	}
	for _, code := range res {
		return ch, code < 0x80, nil
	}
	return ch, false, nil
}

// Publish publishes at QoS 1 and waits for the broker's PUBACK. Note that
// an MQTT 3.1.1 broker acknowledges a publish its ACL refuses, too.
func Publish(t testing.TB, c mqtt.Client, topic string, retained bool, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(opTimeout) {
		t.Fatalf("publish %q: no PUBACK within %v", topic, opTimeout)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %q: %v", topic, err)
	}
}

// Receive waits for one message on ch, failing the test after timeout.
func Receive(t testing.TB, ch <-chan mqtt.Message, timeout time.Duration) mqtt.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
		return nil
	}
}
