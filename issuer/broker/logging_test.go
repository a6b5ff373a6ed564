package broker_test

import (
	"fmt"
	"strings"
	"testing"

	"agoratokens/internal/testbroker"
	"agoratokens/internal/testlog"
)

// marker is a payload that must never reach the log, in any form.
const marker = "MARKER-token-007eJxTYBBb"

// payloadForms are the ways a payload could show in a log line: as is,
// and as the decimal bytes of a printed []byte.
func payloadForms() []string {
	b := []byte(marker)
	dec := make([]string, len(b))
	for i, c := range b {
		dec[i] = fmt.Sprint(c)
	}
	return []string{marker, strings.Join(dec, " ")}
}

// TestRefusedPublishPayloadNeverLogged: a publish the ACL refuses, at
// QoS 0 and 1 (where mochi logs the whole packet and disconnects the
// client), never puts its payload in the log, at any level; the log
// names the topic and client instead.
func TestRefusedPublishPayloadNeverLogged(t *testing.T) {
	logs := &testlog.Buffer{}
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1", "dev-2"}, Logger: logs.Logger()})
	for _, qos := range []byte{0, 1} {
		c := testbroker.Connect(t, m.URL, testbroker.ClientOptions{ClientID: fmt.Sprintf("dev-1:q%d", qos),
			Username: "dev-1", Password: m.Secret("dev-1")})
		c.Publish(topics.Req("dev-2"), qos, false, []byte(`{"v":1,"id":"`+marker+`"}`)).WaitTimeout(wait)
	}
	logs.WaitFor(t, wait, "error processing packet") // the QoS 1 one, after the refusal
	text := logs.String()
	for _, f := range payloadForms() {
		if strings.Contains(text, f) {
			t.Fatalf("the log holds a refused payload (%q):\n%s", f, text)
		}
	}
	if !strings.Contains(text, "topic="+topics.Req("dev-2")) || !strings.Contains(text, "payload_bytes=") {
		t.Errorf("the refusal does not name the topic and size:\n%s", text)
	}
	// User names are quoted once, by the log handler, if at all.
	if strings.Contains(text, `\"dev-1\"`) || !strings.Contains(text, "user=dev-1") {
		t.Errorf("user names are not logged as they are:\n%s", text)
	}
}

// TestShutdownLogsNoWarning: stopping the broker with a client connected
// logs no warning (mochi's listener logs the closed connection with an
// empty message at warn level).
func TestShutdownLogsNoWarning(t *testing.T) {
	logs := &testlog.Buffer{}
	m := testbroker.StartMochi(t, testbroker.MochiOptions{Devices: []string{"dev-1"}, Logger: logs.Logger()})
	testbroker.Connect(t, m.URL, m.Device("dev-1"))
	m.Stop()
	text := logs.String()
	if !strings.Contains(text, "mochi mqtt server stopped") {
		t.Fatalf("no stop in the log:\n%s", text)
	}
	if strings.Contains(text, "level=WARN") || strings.Contains(text, `msg=""`) {
		t.Fatalf("a clean shutdown logged a warning or a message-less line:\n%s", text)
	}
}
