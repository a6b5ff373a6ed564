package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	cmds := map[string]Command{"hello": func(_ context.Context, args []string, stdout, _ io.Writer) int {
		_, _ = io.WriteString(stdout, "hi "+strings.Join(args, ","))
		return 7
	}}
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		out, errs string
	}{
		{"command", []string{"hello", "a", "b"}, 7, "hi a,b", ""},
		{"version", []string{"--version"}, 0, "prog 1.2\n", ""},
		{"help", []string{"help"}, 0, "USAGE", ""},
		{"none", nil, 2, "", "USAGE"},
		{"unknown", []string{"nope"}, 2, "", `prog: unknown command "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o, e bytes.Buffer
			code := Run(context.Background(), "prog", "1.2", "USAGE", cmds, tc.args, &o, &e)
			if code != tc.code || !strings.Contains(o.String(), tc.out) || !strings.Contains(e.String(), tc.errs) {
				t.Fatalf("code %d stdout %q stderr %q", code, o.String(), e.String())
			}
			if tc.out == "" && o.Len() != 0 {
				t.Fatalf("stdout %q, want nothing", o.String())
			}
		})
	}
}
