package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// Paths of the binaries under test, built by TestMain.
var (
	issuerBin string
	agentBin  string
)

// TestMain builds both binaries once per run, as shipped (static, no cgo),
// into a temporary directory outside the checkout, removes it at the end,
// and fails the run if a goroutine of the harness outlived its test.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "agoratokens-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults: temp dir for the binaries:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	issuerBin = filepath.Join(dir, "agora-token-issuer")
	agentBin = filepath.Join(dir, "agora-token-agent")
	for bin, pkg := range map[string]string{issuerBin: "agoratokens/cmd/agora-token-issuer", agentBin: "agoratokens/cmd/agora-token-agent"} {
		if err := build(bin, pkg); err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "faults: goroutines outlived the tests:", err)
			return 1
		}
	}
	return code
}

// build compiles pkg into bin with the go command that runs the tests.
func build(bin, pkg string) error {
	gocmd := os.Getenv("GO")
	if gocmd == "" {
		gocmd = "go"
	}
	cmd := exec.Command(gocmd, "build", "-trimpath", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	return nil
}
