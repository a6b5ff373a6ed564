package agent

import (
	"strings"
	"testing"

	"agoratokens/configfile/configfiletest"
)

// FuzzParseConfig feeds arbitrary files to the config parser: it must
// never panic, a config it accepts must be valid, and no error may name
// a Go type or a YAML tag (users see these errors).
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("device_id: dev-1\nbroker: {url: tcp://127.0.0.1:1883}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := ParseConfig(strings.NewReader(string(src)), "/etc/agora-token-agent")
		if err != nil {
			if c != nil {
				t.Fatal("a config and an error")
			}
			configfiletest.CheckWording(t, err)
			return
		}
		if (c.Broker == nil) == (c.HTTP == nil) || c.DeviceID == "" || c.RenewBefore <= 0 || c.Socket.MaxClients < 1 {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
	})
}
