// Package ctest tests the C client in the directory above: it builds
// the library, its JSON table test and the example with gcc, and runs the
// example against the real socket server over a fake token source. (Go
// does not allow C files beside Go files without cgo, hence this folder.)
package ctest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
	"agoratokens/clock"
	"agoratokens/internal/testlog"
)

var cflags = []string{"-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"}

// build compiles sources into a program in dir.
func build(t *testing.T, dir, name string, sources ...string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal("gcc not found: the C client tests need it (apt-get install gcc, or run make test-deps)")
	}
	out := filepath.Join(dir, name)
	args := append(append([]string{}, cflags...), "-o", out)
	cmd := exec.Command(gcc, append(args, sources...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", sources, err, b)
	}
	return out
}

func TestJSONExtractor(t *testing.T) {
	bin := build(t, t.TempDir(), "json_check", "testdata/json_check.c", "../agora_token_client.c")
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("json_check: %v\n%s", err, out)
	}
	if !bytes.HasPrefix(out, []byte("ok ")) {
		t.Fatalf("json_check printed %q", out)
	}
}

// TestExample runs the example program against a real socket server:
// it joins with the current token, renews on each pushed token, and
// reconnects when the agent restarts.
func TestExample(t *testing.T) {
	dir := t.TempDir()
	bin := build(t, dir, "example", "../example.c", "../agora_token_client.c")
	path := filepath.Join(dir, "agent.sock")

	clk := clock.NewFake(sockettest.T0)
	set := func(src *sockettest.Source, token string) { src.Issue("video", token, time.Hour) }
	serve := func(token string) (*sockettest.Source, func() error) {
		src := sockettest.NewSource("cam-42", clk)
		set(src, token)
		_, stop := sockettest.Serve(t, socket.Config{Path: path, Clock: clk}, src)
		return src, stop
	}
	src, stop := serve("007eJxTYPgv0")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-s", path, "-n", "3", "video")
	stderr := &testlog.Buffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got, ok := <-lines:
			if !ok {
				t.Fatalf("example exited; want %s\nstderr:\n%s", want, stderr)
			}
			if got != want {
				t.Fatalf("example printed %s\nwant %s\nstderr:\n%s", got, want, stderr)
			}
		case <-ctx.Done():
			t.Fatalf("example printed nothing; want %s\nstderr:\n%s", want, stderr)
		}
	}

	expect(`agora_rtc_join_channel(conn, channel, uid, "007eJxTYPgv0")`)
	set(src, "007eJxTYPgv1")
	expect(`agora_rtc_renew_token(conn, "007eJxTYPgv1")`)

	// The agent restarts with a newer token: the example reconnects.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	src, _ = serve("007eJxTYPgv2")
	expect(`agora_rtc_renew_token(conn, "007eJxTYPgv2")`)

	// The token expires: the example asks the agent for a renewal on its
	// watching connection, and renews with what comes back.
	clk.Advance(time.Hour + time.Second)
	src.Emit(agent.EventExpired, "video")
	select {
	case name := <-src.Renews():
		if name != "video" {
			t.Fatalf("example asked to renew %q", name)
		}
	case <-ctx.Done():
		t.Fatalf("example did not ask for a renewal after expiry\nstderr:\n%s", stderr)
	}
	set(src, "007eJxTYPgv3")
	expect(`agora_rtc_renew_token(conn, "007eJxTYPgv3")`)

	if err := cmd.Wait(); err != nil {
		t.Fatalf("example: %v\nstderr:\n%s", err, stderr)
	}
}

// TestExampleForbidden: a process the agent refuses (here uid 65534,
// not allowed by the default config) is told forbidden once and stops:
// retrying cannot help until the agent's config or the process's groups
// change, so a loop printing the refusal every second would only fill
// the journal.
func TestExampleForbidden(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs the example as uid 65534 and must run as root (make test does)")
	}
	// Not t.TempDir: uid 65534 must be able to reach the binary and the socket.
	dir, err := os.MkdirTemp("", "c-forbidden-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := build(t, dir, "example", "../example.c", "../agora_token_client.c")
	path := filepath.Join(dir, "agent.sock")
	logs := &testlog.Buffer{}
	src := sockettest.NewSource("cam-42", nil)
	src.Issue("video", "007eJxTYPgv0", time.Hour)
	sockettest.Serve(t, socket.Config{Path: path, Mode: 0o666, Logger: logs.Logger()}, src)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-s", path, "video")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the refused example kept running; it printed:\n%s", stderr.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("refused example: %v, want exit status 1\nstderr:\n%s", err, stderr.String())
	}
	if n := strings.Count(stderr.String(), "forbidden"); n != 1 || stdout.Len() != 0 {
		t.Errorf("refused example printed %q on stdout and, with forbidden %d times, on stderr:\n%s",
			stdout.String(), n, stderr.String())
	}
	if n := strings.Count(logs.String(), "socket client refused"); n != 1 {
		t.Errorf("the agent refused %d connections, want 1 (no retry):\n%s", n, logs)
	}
}

// TestMakefileCompiler: make -C clients/c builds with gcc unless told
// otherwise (make's own default CC=cc must not win), and with the
// compiler named on the command line or in the environment.
func TestMakefileCompiler(t *testing.T) {
	makeTool, err := exec.LookPath("make")
	if err != nil {
		t.Fatal("make not found: this test runs clients/c's Makefile (apt-get install make)")
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CC=") && !strings.HasPrefix(kv, "MAKEFLAGS=") {
			env = append(env, kv)
		}
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"default", nil, nil, "gcc "},
		{"command line", []string{"CC=clang"}, nil, "clang "},
		{"environment", nil, []string{"CC=tcc"}, "tcc "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(makeTool, append([]string{"-s", "-n", "-B", "-C", "..", "example"}, tt.args...)...)
			cmd.Env = append(append([]string{}, env...), tt.env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("make -n: %v\n%s", err, out)
			}
			if !strings.HasPrefix(string(out), tt.want) {
				t.Errorf("make would run %q, want a command starting %q", out, tt.want)
			}
		})
	}
}
