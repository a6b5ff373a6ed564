package socket_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
)

func dialErr(path string) (net.Conn, error) {
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
	}
	return c, err
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

func TestSocketFileModeAndGroup(t *testing.T) {
	tests := []struct {
		name    string
		cfg     socket.Config
		mode    os.FileMode
		gid     int // -1: the agent's
		wantErr string
	}{
		{name: "default", mode: 0o660, gid: -1},
		{name: "private", cfg: socket.Config{Mode: 0o600}, mode: 0o600, gid: -1},
		{name: "numeric group", cfg: socket.Config{Group: "65534"}, mode: 0o660, gid: 65534},
		{name: "named group", cfg: socket.Config{Group: "root", Mode: 0o640}, mode: 0o640, gid: 0},
		{name: "unknown group", cfg: socket.Config{Group: "no-such-group-here"}, wantErr: `"no-such-group-here"`},
		{name: "setuid mode", cfg: socket.Config{Mode: os.ModeSetuid | 0o660}, wantErr: "only permission bits"},
		{name: "path too long", cfg: socket.Config{Path: "/tmp/" + strings.Repeat("x", 120)}, wantErr: "longer than a Unix socket address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr != "" {
				_, err := socket.New(tt.cfg, sockettest.NewSource("d", nil))
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			srv, _ := sockettest.Serve(t, tt.cfg, sockettest.NewSource("d", nil))
			fi, err := os.Lstat(srv.Path())
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != tt.mode {
				t.Errorf("socket file mode %v, want socket %v", fi.Mode(), tt.mode)
			}
			gid := int(fi.Sys().(*syscall.Stat_t).Gid)
			want := tt.gid
			if want < 0 {
				want = os.Getegid()
			}
			if gid != want {
				t.Errorf("socket file group %d, want %d", gid, want)
			}
		})
	}
}

func TestStaleSocketRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // a dead agent's socket stays behind
	if !exists(path) {
		t.Fatal("setup: the stale socket is gone")
	}
	srv, _ := sockettest.Serve(t, socket.Config{Path: path}, sockettest.NewSource("d", nil))
	c := dial(t, srv.Path())
	c.send(`{"op":"status"}`)
	c.expect("status")
}

func TestPathInUseRefused(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	subdir := filepath.Join(dir, "sub")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct{ name, path, want string }{
		{"regular file", regular, "is not a socket (regular file)"},
		{"directory", subdir, "is not a socket (directory)"},
		{"live socket", live, "in use by another process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := socket.New(socket.Config{Path: tt.path}, sockettest.NewSource("d", nil))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = srv.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: %v, want an error containing %q", err, tt.want)
			}
			select {
			case <-srv.Ready():
				t.Error("Ready closed for a server that never listened")
			default:
			}
		})
	}
	if b, err := os.ReadFile(regular); err != nil || string(b) != "keep me" {
		t.Errorf("regular file touched: %q, %v", b, err)
	}
	if _, err := dialErr(live); err != nil {
		t.Errorf("the other process's socket was disturbed: %v", err)
	}
}

func TestParentDirectoryCreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "agora-token-agent", "agent.sock")
	srv, _ := sockettest.Serve(t, socket.Config{Path: path}, sockettest.NewSource("d", nil))
	c := dial(t, srv.Path())
	c.send(`{"op":"status"}`)
	c.expect("status")
}
