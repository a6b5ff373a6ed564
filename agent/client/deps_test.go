package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyStandardLibrary: a media process that links the Go client must
// not carry the agent's dependencies (MQTT, YAML, GPIO, backoff). The
// client, the protocol package and the example media process may import the standard library and
// the protocol package, nothing else.
func TestOnlyStandardLibrary(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("the go tool is not on PATH: this test lists the client's imports with go list")
	}
	allowed := map[string]bool{
		"agoratokens/agent/client":      true,
		"agoratokens/agent/socketproto": true,
	}
	// The example media process is what a camera's app would link.
	for _, pkg := range []string{"agoratokens/agent/socketproto", "agoratokens/agent/client",
		"agoratokens/examples/media-client"} {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command(goTool, "list", "-deps",
				"-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				if !allowed[dep] && dep != pkg {
					t.Errorf("%s imports %s; it may import only the standard library and %s",
						pkg, dep, "agoratokens/agent/socketproto")
				}
			}
		})
	}
}
