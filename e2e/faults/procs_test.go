package faults

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"agoratokens/internal/testlog"
)

// stopGrace bounds a SIGTERM shutdown: the issuer drains its requests for
// up to 20 s, so a clean stop may take that long.
const stopGrace = 30 * time.Second

// daemon is one long-running binary under test (the issuer, an agent):
// the command to run and every process it has been so far. Its log holds
// the stderr and stdout of all of them, each run headed by a marker line.
type daemon struct {
	t    testing.TB
	name string
	bin  string
	args []string
	tl   *timeline
	// comps are the timeline components this daemon's liveness feeds
	// (the issuer with an embedded broker is two).
	comps []string
	log   *testlog.Buffer

	mu   sync.Mutex
	runs []*procRun
}

// procRun is one process of a daemon and how it ended.
type procRun struct {
	n       int
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed once the process has exited
	state   *os.ProcessState
	// signalled is what the test sent (SIGKILL, SIGTERM), 0 for none.
	signalled syscall.Signal
}

func newDaemon(t testing.TB, tl *timeline, name string, comps []string, bin string, args ...string) *daemon {
	d := &daemon{t: t, name: name, comps: comps, bin: bin, args: args, tl: tl, log: &testlog.Buffer{}}
	t.Cleanup(d.finish)
	return d
}

// mark records the daemon's components up or down on the timeline.
func (d *daemon) mark(up bool, note string) {
	for i, c := range d.comps {
		if i > 0 {
			note = ""
		}
		d.tl.set(c, up, note)
	}
}

// waitLog waits until cond holds for the daemon's log, failing the test
// after timeout or as soon as the running process exits (its end is
// written to the log, which wakes the wait).
func (d *daemon) waitLog(t testing.TB, timeout time.Duration, cond func(string) bool) {
	t.Helper()
	exited := d.exited()
	if !d.log.Wait(timeout, func(text string) bool { return cond(text) || isClosed(exited) }) {
		t.Fatalf("%s: the awaited log line did not come within %v; log tail:\n%s", d.name, timeout, tail(d.log.String(), 30))
	}
	if !cond(d.log.String()) {
		t.Fatalf("%s exited while the test waited on its log; log tail:\n%s", d.name, tail(d.log.String(), 30))
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// start runs a new process of the daemon and marks its component up.
func (d *daemon) start() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.current(); r != nil {
		d.t.Fatalf("%s: start while pid %d still runs", d.name, r.cmd.Process.Pid)
	}
	cmd := exec.Command(d.bin, d.args...)
	cmd.Stdout = d.log
	cmd.Stderr = d.log
	// The process dies with the test binary, whatever way that ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r := &procRun{n: len(d.runs) + 1, cmd: cmd, done: make(chan struct{})}
	fmt.Fprintf(d.log, "=== %s run %d\n", d.name, r.n)
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start %s: %v", d.name, err)
	}
	r.started = time.Now()
	d.runs = append(d.runs, r)
	d.mark(true, fmt.Sprintf("%s started (pid %d)", d.name, cmd.Process.Pid))
	go func() {
		_ = cmd.Wait()
		d.mu.Lock()
		r.state = cmd.ProcessState
		sig := r.signalled
		d.mu.Unlock()
		if sig == 0 {
			// Nobody asked it to stop: a crash, reported by finish.
			d.mark(false, fmt.Sprintf("%s exited by itself: %v", d.name, cmd.ProcessState))
		}
		fmt.Fprintf(d.log, "=== %s run %d ended: %v\n", d.name, r.n, cmd.ProcessState)
		close(r.done)
	}()
}

// current is the running process, nil if none. d.mu must be held.
func (d *daemon) current() *procRun {
	if len(d.runs) == 0 {
		return nil
	}
	r := d.runs[len(d.runs)-1]
	select {
	case <-r.done:
		return nil
	default:
		return r
	}
}

// running reports whether a process of the daemon runs now.
func (d *daemon) running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current() != nil
}

// pid is the running process's id, 0 if none.
func (d *daemon) pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.current(); r != nil {
		return r.cmd.Process.Pid
	}
	return 0
}

// signal sends sig to the running process, marks the component down and
// waits up to grace for the process to exit (then kills it and fails the
// test).
func (d *daemon) signal(sig syscall.Signal, grace time.Duration) *procRun {
	d.t.Helper()
	d.mu.Lock()
	r := d.current()
	if r == nil {
		d.mu.Unlock()
		d.t.Fatalf("%s: %v sent while no process runs", d.name, sig)
		return nil
	}
	r.signalled = sig
	d.mu.Unlock()
	d.mark(false, fmt.Sprintf("%s sent %v (pid %d)", d.name, sig, r.cmd.Process.Pid))
	if err := r.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		d.t.Errorf("%s: send %v: %v", d.name, sig, err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		_ = r.cmd.Process.Kill()
		<-r.done
		d.t.Errorf("%s (pid %d) did not exit within %v of %v; killed", d.name, r.cmd.Process.Pid, grace, sig)
	}
	return r
}

// kill SIGKILLs the running process, as a power cut or the OOM killer
// would.
func (d *daemon) kill() { d.t.Helper(); d.signal(syscall.SIGKILL, stopGrace) }

// stop sends SIGTERM, as systemd does, and expects exit status 0.
func (d *daemon) stop() {
	d.t.Helper()
	r := d.signal(syscall.SIGTERM, stopGrace)
	if r != nil && r.state != nil && r.state.ExitCode() != 0 {
		d.t.Errorf("%s (pid %d) exited with %v after SIGTERM, want status 0", d.name, r.cmd.Process.Pid, r.state)
	}
}

// finish stops a process still running and checks how every run ended:
// a process the test did not signal must still be running at the end,
// and no output may show a Go panic, a fatal runtime error or a race.
func (d *daemon) finish() {
	if d.running() {
		d.stop()
	}
	for _, p := range d.problems() {
		d.t.Error(p)
	}
	if d.t.Failed() {
		d.t.Logf("%s log (last 60 lines):\n%s", d.name, tail(d.log.String(), 60))
	}
}

// crashMarkers are what Go prints when a process dies of a bug.
var crashMarkers = []string{"panic:", "fatal error:", "WARNING: DATA RACE", "goroutine 1 [", "SIGSEGV"}

// problems lists every run that ended on its own and every crash marker
// in the log.
func (d *daemon) problems() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, r := range d.runs {
		select {
		case <-r.done:
		default:
			continue
		}
		if r.signalled == 0 {
			out = append(out, fmt.Sprintf("%s run %d (pid %d) exited by itself: %v", d.name, r.n, r.cmd.Process.Pid, r.state))
		}
	}
	log := d.log.String()
	for _, m := range crashMarkers {
		if i := strings.Index(log, m); i >= 0 {
			out = append(out, fmt.Sprintf("%s log shows %q: %s", d.name, m, firstLine(log[i:])))
		}
	}
	return out
}

// exited is closed when the running process exits, for waits that must
// end early if the daemon dies.
func (d *daemon) exited() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.current(); r != nil {
		return r.done
	}
	c := make(chan struct{})
	close(c)
	return c
}

// usage is a process's resident memory and open descriptors, read from
// /proc.
type usage struct {
	PID    int
	RSSKiB int
	FDs    int
}

func (u usage) String() string {
	return fmt.Sprintf("pid %d: rss %.1f MiB, %d fds", u.PID, float64(u.RSSKiB)/1024, u.FDs)
}

// readUsage reads VmRSS from /proc/PID/status and counts /proc/PID/fd.
func readUsage(pid int) (usage, error) {
	u := usage{PID: pid}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(v)
			if len(fields) > 0 {
				u.RSSKiB, _ = strconv.Atoi(fields[0])
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return u, err
	}
	u.FDs = len(fds)
	return u, nil
}

// logLine is one parsed line of a daemon's slog text output.
type logLine struct {
	At    time.Time
	Level string
	Msg   string
	Attrs map[string]string
}

var logAttr = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// parseLog parses slog's text format (time=… level=… msg=… k=v …);
// lines of another shape (run markers) are skipped.
func parseLog(text string) []logLine {
	var out []logLine
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "time=") {
			continue
		}
		l := logLine{Attrs: map[string]string{}}
		for _, m := range logAttr.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
			switch m[1] {
			case "time":
				l.At, _ = time.Parse(time.RFC3339Nano, v)
			case "level":
				l.Level = v
			case "msg":
				l.Msg = v
			default:
				l.Attrs[m[1]] = v
			}
		}
		out = append(out, l)
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
