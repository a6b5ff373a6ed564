package main

import (
	"strings"
	"testing"

	"agoratokens/agent"
	"agoratokens/agent/socketproto"
	"agoratokens/device"
)

func TestLEDState(t *testing.T) {
	tests := []struct {
		name string
		h    agent.Health
		want device.LEDState
	}{
		{"all valid", agent.Health{}, device.LEDOK},
		{"renewing", agent.Health{Renewing: true}, device.LEDRenewing},
		{"failing", agent.Health{Failing: true, Renewing: true}, device.LEDFailing},
		{"refused, others valid", agent.Health{Refused: true}, device.LEDFailing},
		{"refused while renewing", agent.Health{Refused: true, Renewing: true}, device.LEDFailing},
		{"expired wins over refused", agent.Health{Refused: true, Expired: true}, device.LEDExpired},
		{"expired", agent.Health{Expired: true, Failing: true}, device.LEDExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ledState(tt.h); got != tt.want {
				t.Fatalf("ledState(%+v) = %s, want %s", tt.h, got, tt.want)
			}
		})
	}
}

func TestPrintStatusShowsStorageAndRefusals(t *testing.T) {
	var b strings.Builder
	printStatus(&b, socketproto.Message{Device: "cam-42", Broker: "connected",
		Storage: "memory only: persist token \"video\": no space left on device",
		Refused: []socketproto.Message{{Name: "vidoe", Code: "forbidden", Message: `device "cam-42" may not hold token "vidoe"`}}})
	out := squeeze(b.String())
	for _, want := range []string{"state: memory only: persist token \"video\": no space left on device",
		"refused: vidoe: forbidden: device \"cam-42\" may not hold token \"vidoe\""} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printStatus(&b, socketproto.Message{Device: "cam-42", Broker: "connected"})
	if out := squeeze(b.String()); !strings.Contains(out, "state: persisted") || strings.Contains(out, "refused") {
		t.Errorf("healthy status output:\n%s", out)
	}
}

// squeeze folds runs of blanks (tabwriter's padding) into one space.
func squeeze(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}
