package testbroker

import (
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"agoratokens/internal/testlog"
)

// process is the broker process a test started (mosquitto, a
// nats-server node): the one running now, if any.
type process struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
}

var errNotRunning = errors.New("not running")

// set records a started process and its exit channel.
func (p *process) set(cmd *exec.Cmd, done chan struct{}) {
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

func (p *process) current() *exec.Cmd {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd
}

// stop kills the process (SIGKILL, as a crash) and waits for it to
// exit; nothing when none runs.
func (p *process) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// restart stops the process and starts bin again with start.
func (p *process) restart(t testing.TB, bin string, start func(path string) error) error {
	t.Helper()
	p.stop()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s is not installed: %v", bin, err)
	}
	return start(path)
}

// reload sends SIGHUP and waits until log holds one more line with
// marker than before.
func (p *process) reload(log *testlog.Buffer, marker string) error {
	cmd := p.current()
	if cmd == nil {
		return errNotRunning
	}
	before := strings.Count(log.String(), marker)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	if !log.Wait(startTimeout, func(s string) bool { return strings.Count(s, marker) > before }) {
		return errors.New("no reload logged within " + startTimeout.String())
	}
	return nil
}

// cpu is the CPU time the process has used so far, 0 when none runs.
func (p *process) cpu() time.Duration {
	cmd := p.current()
	if cmd == nil {
		return 0
	}
	d, _ := procCPU(cmd.Process.Pid)
	return d
}
