package issuer

import (
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// The request path (admit, the workers, the reply tracker, the
// refuser), the statuses and the pushes are the same over every
// transport; a transport gives them its requests as inbound values and
// publishes for them through an outlet. Topics are MQTT topics
// throughout: the NATS transport maps them to its subjects.

// inbound is one request as a transport hands it over.
type inbound interface {
	Payload() []byte
	// Ack tells the transport the request is done with (MQTT: its
	// PUBACK; NATS has nothing to acknowledge).
	Ack()
}

// outlet publishes on the transport's connection.
type outlet interface {
	// publish sends payload on an MQTT topic; the token is done once
	// the broker has it (at QoS 1) or it is written (QoS 0).
	publish(topic string, qos byte, retained bool, payload []byte) mqtt.Token
	// open reports whether the connection is up.
	open() bool
}

// mqttOutlet is the MQTT client's outlet.
type mqttOutlet struct{ c mqtt.Client }

func (o mqttOutlet) publish(topic string, qos byte, retained bool, payload []byte) mqtt.Token {
	return o.c.Publish(topic, qos, retained, payload)
}

func (o mqttOutlet) open() bool { return o.c.IsConnectionOpen() }

// outletBox holds the outlet Run set up.
type outletBox struct{ v atomic.Value } // outletRef

type outletRef struct{ o outlet }

func (s *Service) setOut(o outlet) { s.outlet.v.Store(outletRef{o}) }

// out is the transport's outlet, nil before Run.
func (s *Service) out() outlet {
	r, _ := s.outlet.v.Load().(outletRef)
	return r.o
}
