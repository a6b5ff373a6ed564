package fleetsim

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

func TestPacketRemainingLength(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x30, 0x00}},
		{127, []byte{0x30, 0x7f}},
		{128, []byte{0x30, 0x80, 0x01}},
		{16383, []byte{0x30, 0xff, 0x7f}},
		{16384, []byte{0x30, 0x80, 0x80, 0x01}},
	} {
		got := packet(pktPublish, make([]byte, tc.n))
		if !bytes.Equal(got[:len(tc.want)], tc.want) || len(got) != len(tc.want)+tc.n {
			t.Errorf("length %d: header % x, want % x", tc.n, got[:len(tc.want)], tc.want)
		}
	}
}

// TestReadLoop feeds packets through a pipe: a QoS 1 publish is
// acknowledged with its packet id and handed over, a PUBACK is skipped,
// and malformed packets end the loop with an error naming the problem.
func TestReadLoop(t *testing.T) {
	publish := func(qos byte, topic string, id []byte, payload string) []byte {
		b := appendString(nil, topic)
		b = append(b, id...)
		return packet(pktPublish|qos<<1, append(b, payload...))
	}
	for _, tc := range []struct {
		name    string
		in      [][]byte
		acks    []byte
		got     []string
		wantErr string
	}{
		{"qos1 then puback", [][]byte{publish(1, "t", []byte{0, 7}, "hello"), {pktPuback, 2, 0, 2}},
			[]byte{pktPuback, 2, 0, 7}, []string{"hello"}, "EOF"},
		{"qos0", [][]byte{publish(0, "t", nil, "x")}, nil, []string{"x"}, "EOF"},
		{"topic past the end", [][]byte{{pktPublish, 3, 0, 9, 'a'}}, nil, nil, "topic past"},
		{"no packet id", [][]byte{packet(pktPublish|2, appendString(nil, "t"))}, nil, nil, "no packet id"},
		{"remaining length too long", [][]byte{{pktPublish, 0xff, 0xff, 0xff, 0xff, 0x01}}, nil, nil, "malformed remaining length"},
		{"oversize", [][]byte{{pktPublish, 0xff, 0xff, 0xff, 0x7f}}, nil, nil, "over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, broker := net.Pipe()
			c := newMQTTConn(client)
			acks := make(chan []byte, 1)
			go func() {
				var all []byte
				buf := make([]byte, 64)
				for { // until the client closes its end
					n, err := broker.Read(buf)
					all = append(all, buf[:n]...)
					if err != nil {
						acks <- all
						return
					}
				}
			}()
			go func() {
				for _, p := range tc.in {
					if _, err := broker.Write(p); err != nil {
						return
					}
				}
				_ = broker.SetWriteDeadline(time.Now().Add(time.Second))
				broker.Close()
			}()
			var got []string
			err := c.readLoop(func(p []byte) { got = append(got, string(p)) })
			client.Close()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Join(got, ",") != strings.Join(tc.got, ",") {
				t.Fatalf("messages %q, want %q", got, tc.got)
			}
			if a := <-acks; !bytes.Equal(a, tc.acks) {
				t.Fatalf("wrote % x, want % x", a, tc.acks)
			}
		})
	}
}
