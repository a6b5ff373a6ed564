package fleetsim

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"agoratokens/redact"
)

// The simulated devices speak MQTT 3.1.1 through the minimal client in
// this file rather than through paho. This is deliberate: a fleet
// simulator's clients must cost far less than what they measure, and a
// paho client is built for a device's life (reconnects, stores, ordered
// routing), with half a dozen goroutines and channels per connection and
// one write per packet. In a 10,000-device storm on two cores those
// clients took more CPU than the broker and the issuer together. A
// simulated device needs only: connect with its own credentials,
// subscribe to its token topic, publish one request at QoS 1, and read
// its reply (acknowledging it). One goroutine per device reads; writes
// are whole packets. No keepalive is asked for (the broker never times a
// simulated device out), there is no reconnect and no session: a device
// that fails is counted as failed or lost, which is the point.

// mqttConn is one device's MQTT 3.1.1 connection.
type mqttConn struct {
	nc  net.Conn
	r   *bufio.Reader
	wmu sync.Mutex // one packet written at a time
}

// Packet types (MQTT 3.1.1 section 2.2.1), shifted into the first byte.
const (
	pktConnect    = 1 << 4
	pktConnack    = 2 << 4
	pktPublish    = 3 << 4
	pktPuback     = 4 << 4
	pktSubscribe  = 8<<4 | 2 // with the reserved flags 0010
	pktSuback     = 9 << 4
	pktDisconnect = 14 << 4
)

// maxPacket bounds what a simulated device accepts (replies are at most
// a few KiB; the issuer's max payload is 16 KiB).
const maxPacket = 1 << 20

// dialMQTT connects to brokerURL (tcp:// or ssl://), logs in with user
// and password as client id user (clean session), and returns once the
// broker accepted, or fails after timeout.
func dialMQTT(brokerURL string, tlsCfg *tls.Config, user, password string, timeout time.Duration) (*mqttConn, error) {
	u, err := parseBrokerURL(brokerURL)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: timeout}
	var nc net.Conn
	switch u.Scheme {
	case "tcp", "mqtt":
		nc, err = d.Dial("tcp", u.Host)
	case "ssl", "tls", "mqtts":
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if tlsCfg != nil {
			cfg = tlsCfg.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		nc, err = tls.DialWithDialer(d, "tcp", u.Host, cfg)
	}
	if err != nil {
		return nil, err
	}
	c := newMQTTConn(nc)
	_ = nc.SetDeadline(time.Now().Add(timeout))
	if err := c.write(connectPacket(user, user, password)); err != nil {
		nc.Close()
		return nil, err
	}
	typ, body, err := c.read()
	switch {
	case err != nil:
		nc.Close()
		return nil, fmt.Errorf("connack: %w", err)
	case typ&0xf0 != pktConnack || len(body) != 2:
		nc.Close()
		return nil, fmt.Errorf("connack: got packet type %d", typ>>4)
	case body[1] != 0:
		nc.Close()
		return nil, fmt.Errorf("the broker refused the login: %s", connackReason(body[1]))
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// parseBrokerURL checks a broker URL: tcp:// (or mqtt://) or ssl:// (or
// tls://, mqtts://), a host and a port. Its errors never repeat the URL's
// password.
func parseBrokerURL(raw string) (*url.URL, error) {
	u, err := redact.ParseURL(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("broker URL is not a valid URL: %w", err)
	case u.Scheme != "tcp" && u.Scheme != "mqtt" && u.Scheme != "ssl" && u.Scheme != "tls" && u.Scheme != "mqtts":
		return nil, fmt.Errorf("broker URL %s: scheme %q is not tcp or ssl", redact.URL(raw), u.Scheme)
	case u.Hostname() == "" || u.Port() == "":
		return nil, fmt.Errorf("broker URL %s needs a host and a port", redact.URL(raw))
	}
	return u, nil
}

func newMQTTConn(nc net.Conn) *mqttConn {
	return &mqttConn{nc: nc, r: bufio.NewReaderSize(nc, 1024)}
}

func connackReason(code byte) string {
	switch code {
	case 1:
		return "unacceptable protocol version"
	case 2:
		return "client id rejected"
	case 3:
		return "server unavailable"
	case 4:
		return "bad user name or password"
	case 5:
		return "not authorized"
	}
	return fmt.Sprintf("return code %d", code)
}

// subscribe subscribes to topic at QoS 1 (packet id 1) and waits for
// the broker's grant.
func (c *mqttConn) subscribe(topic string, timeout time.Duration) error {
	var b []byte
	b = appendString(append(b, 0, 1), topic)
	b = append(b, 1)
	if err := c.write(packet(pktSubscribe, b)); err != nil {
		return err
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.nc.SetReadDeadline(time.Time{}) }()
	typ, body, err := c.read()
	switch {
	case err != nil:
		return fmt.Errorf("suback: %w", err)
	case typ&0xf0 != pktSuback || len(body) != 3 || body[0] != 0 || body[1] != 1:
		return fmt.Errorf("suback: got packet type %d", typ>>4)
	case body[2] >= 0x80:
		return errSubscribeRefused
	}
	return nil
}

// errSubscribeRefused is a SUBACK refusing the subscription: the
// connection stays up, and a retry (as the agent's) subscribes on it
// again.
var errSubscribeRefused = errors.New("the broker refused the token topic")

// publish1 publishes payload on topic at QoS 1 with packet id 2 (a
// device sends one request per run). Its PUBACK arrives in readLoop.
func (c *mqttConn) publish1(topic string, payload []byte) error {
	b := make([]byte, 0, 2+len(topic)+2+len(payload))
	b = appendString(b, topic)
	b = append(b, 0, 2)
	b = append(b, payload...)
	return c.write(packet(pktPublish|1<<1, b))
}

// readLoop reads until the connection closes, acknowledging QoS 1
// publishes and handing each message's payload to onMessage.
func (c *mqttConn) readLoop(onMessage func(payload []byte)) error {
	for {
		typ, body, err := c.read()
		if err != nil {
			return err
		}
		if typ&0xf0 != pktPublish {
			continue // PUBACK of the request, or nothing a device needs
		}
		qos := typ >> 1 & 3
		if len(body) < 2 {
			return errors.New("publish: short packet")
		}
		n := int(binary.BigEndian.Uint16(body))
		rest := body[2:]
		if len(rest) < n {
			return errors.New("publish: topic past the packet's end")
		}
		rest = rest[n:]
		if qos > 0 {
			if len(rest) < 2 {
				return errors.New("publish: no packet id")
			}
			id := rest[:2]
			rest = rest[2:]
			if err := c.write([]byte{pktPuback, 2, id[0], id[1]}); err != nil {
				return err
			}
		}
		onMessage(rest)
	}
}

// close sends DISCONNECT and closes the connection.
func (c *mqttConn) close() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.write([]byte{pktDisconnect, 0})
	_ = c.nc.Close()
}

func (c *mqttConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// read reads one packet: its first byte and its body.
func (c *mqttConn) read() (byte, []byte, error) {
	typ, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, errors.New("malformed remaining length")
		}
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
	}
	if n > maxPacket {
		return 0, nil, fmt.Errorf("packet of %d bytes is over %d", n, maxPacket)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	return typ, body, nil
}

// connectPacket is a CONNECT with a clean session, no keepalive, user
// name and password.
func connectPacket(clientID, user, password string) []byte {
	b := appendString(nil, "MQTT")
	b = append(b, 4, 0x80|0x40|0x02, 0, 0) // level 4; user, password, clean session; keepalive 0
	b = appendString(b, clientID)
	b = appendString(b, user)
	b = appendString(b, password)
	return packet(pktConnect, b)
}

// packet prefixes body with the fixed header.
func packet(first byte, body []byte) []byte {
	out := make([]byte, 0, 5+len(body))
	out = append(out, first)
	n := len(body)
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}
