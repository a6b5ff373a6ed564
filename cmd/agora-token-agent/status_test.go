package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"agoratokens/agent/socketproto"
)

func TestStatusCmd(t *testing.T) {
	_, path := sockServe(t, "")
	code, out, errs := sockRun(t, runStatus, "--socket", path)
	if code != 0 {
		t.Fatalf("status = %d, %q", code, errs)
	}
	for _, want := range []string{"device:  cam-42", "broker:  connected", "NAME", "video   valid    1h0m0s", "2026-11-22T11:00:00Z", "primary", "signal  missing  -"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "007video") {
		t.Errorf("status printed a token:\n%s", out)
	}

	code, out, errs = sockRun(t, runStatus, "--json", "--socket", path)
	if code != 0 {
		t.Fatalf("status --json = %d, %q", code, errs)
	}
	var m socketproto.Message
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Event != "status" || m.ID != "" ||
		len(m.Tokens) != 2 || m.Tokens[0].State != "valid" || m.Tokens[1].State != "missing" || strings.Count(out, "\n") != 1 {
		t.Errorf("status --json printed %q (%v)", out, err)
	}

	if code, _, errs := sockRun(t, runStatus, "--socket", filepath.Join(t.TempDir(), "none.sock")); code != 1 || !strings.Contains(errs, "connect to the agent") {
		t.Errorf("status with no agent = %d, %q", code, errs)
	}
	if code, _, _ := sockRun(t, runStatus, "extra", "--socket", path); code != 2 {
		t.Errorf("status with an argument = %d, want 2", code)
	}
}
