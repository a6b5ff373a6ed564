package socket_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
	"agoratokens/internal/testlog"

	"go.uber.org/goleak"
)

// helperEnv makes the test binary act as a socket client (see TestMain).
const helperEnv = "AGORA_SOCKET_TEST_CLIENT"

// TestMain runs the helper client when asked to, and otherwise the
// tests, failing them if any goroutine outlives them.
func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(helperClient(path))
	}
	goleak.VerifyTestMain(m)
}

// helperClient asks for the status and prints the reply line.
func helperClient(path string) int {
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, `{"op":"status"}`+"\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println("read:", err)
		return 1
	}
	fmt.Print(line)
	return 0
}

// TestPeerCredentials runs a client as another user (uid 65534) and
// checks the server's SO_PEERCRED/SO_PEERGROUPS decision.
func TestPeerCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs a client as uid 65534 and must run as root (make test does)")
	}
	dir, err := os.MkdirTemp("", "socket-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "client")
	copyFile(t, helper)

	tests := []struct {
		name   string
		cfg    socket.Config
		groups []uint32
		want   string
	}{
		{"default allows only the agent and root", socket.Config{}, nil, `"code":"forbidden"`},
		{"uid allowed", socket.Config{AllowUIDs: []int{65534}}, nil, `"event":"status"`},
		{"primary group allowed", socket.Config{AllowGIDs: []int{65534}}, nil, `"event":"status"`},
		{"supplementary group allowed", socket.Config{AllowGIDs: []int{4242}}, []uint32{4242}, `"event":"status"`},
		{"other supplementary group", socket.Config{AllowGIDs: []int{4242}}, []uint32{4243}, `"code":"forbidden"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Path = filepath.Join(dir, fmt.Sprintf("agent%d.sock", i))
			tt.cfg.Mode = 0o666 // the file lets anyone in; the peer check decides
			logs := &testlog.Buffer{}
			tt.cfg.Logger = logs.Logger()
			sockettest.Serve(t, tt.cfg, sockettest.NewSource("cam-42", nil))

			cmd := exec.Command(helper)
			// GORACE: a race-enabled binary otherwise idles 1 s at exit.
			cmd.Env = append(os.Environ(), helperEnv+"="+tt.cfg.Path, "GORACE=atexit_sleep_ms=0")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: tt.groups}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("client as uid 65534: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("client as uid 65534 got %s, want %s", out, tt.want)
			}
			if strings.Contains(tt.want, "forbidden") && !containsAll(logs.String(), "refused", "uid=65534") {
				t.Errorf("no log line about the refused caller:\n%s", logs)
			}
		})
	}
}

// copyFile copies the running test binary to path, executable by all.
func copyFile(t *testing.T, path string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
