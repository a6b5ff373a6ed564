package broker

import (
	"testing"

	"agoratokens/wire"
)

func TestAllowed(t *testing.T) {
	tp := wire.NewTopics("agora/v1")
	for _, tc := range []struct {
		name, user, topic string
		write, want       bool
	}{
		{"device writes own req", "dev-1", "agora/v1/devices/dev-1/req", true, true},
		{"device writes own status", "dev-1", "agora/v1/devices/dev-1/status", true, true},
		{"device writes own token", "dev-1", "agora/v1/devices/dev-1/token", true, false},
		{"device writes other req", "dev-1", "agora/v1/devices/dev-2/req", true, false},
		{"device writes other status", "dev-1", "agora/v1/devices/dev-2/status", true, false},
		{"device writes issuer status", "dev-1", "agora/v1/issuer/status", true, false},
		{"device writes prefix-sharing device", "dev-1", "agora/v1/devices/dev-10/req", true, false},
		{"device reads own token", "dev-1", "agora/v1/devices/dev-1/token", false, true},
		{"device reads other token", "dev-1", "agora/v1/devices/dev-2/token", false, false},
		{"device reads wildcard tokens", "dev-1", "agora/v1/devices/+/token", false, false},
		{"device reads all", "dev-1", "#", false, false},
		{"device reads own req", "dev-1", "agora/v1/devices/dev-1/req", false, false},
		{"device reads shared own token", "dev-1", "$share/g/agora/v1/devices/dev-1/token", false, false},
		{"device reads $SYS", "dev-1", "$SYS/#", false, false},
		{"service writes token", "issuer", "agora/v1/devices/dev-1/token", true, true},
		{"service writes issuer status", "issuer", "agora/v1/issuer/status", true, true},
		{"service writes outside root", "issuer", "other/topic", true, false},
		{"service writes root look-alike", "issuer", "agora/v10/x", true, false},
		{"service reads all reqs", "issuer", "agora/v1/devices/+/req", false, true},
		{"service reads shared reqs", "issuer", "$share/issuers/agora/v1/devices/+/req", false, true},
		{"service reads everything under root", "issuer", "agora/v1/#", false, true},
		{"service reads shared outside root", "issuer", "$share/g/other/#", false, false},
		{"service reads malformed share", "issuer", "$share/g", false, false},
		{"service reads #", "issuer", "#", false, false},
		{"service reads $SYS", "issuer", "$SYS/#", false, false},
		{"anonymous", "", "agora/v1/devices//req", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := allowed(tp, "issuer", tc.user, tc.topic, tc.write); got != tc.want {
				t.Fatalf("allowed(%q, %q, write=%v) = %v, want %v", tc.user, tc.topic, tc.write, got, tc.want)
			}
		})
	}
}

func TestDeviceClientID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"dev-1", true},
		{"", true},
		{"dev-1:agent", true},
		{"dev-2", false},
		{"dev-10", false},
		{"dev-1-x", false},
		{"issuer", false},
	} {
		if got := deviceClientID("dev-1", tc.id); got != tc.want {
			t.Errorf("deviceClientID(dev-1, %q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
