package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"agoratokens/agent/socket"
	"agoratokens/agent/socket/sockettest"
)

// sockServe runs a socket server over a fake source holding a valid
// "video" token and a "signal" token not received yet.
func sockServe(t *testing.T, path string) (*sockettest.Source, string) {
	t.Helper()
	f := sockettest.NewFixture(t, socket.Config{Path: path})
	f.Set("video", "007video")
	f.Src.Want("signal")
	return f.Src, f.Srv.Path()
}

// sockRun runs one command and returns its exit code and output.
func sockRun(t *testing.T, cmd func(context.Context, []string, io.Writer, io.Writer) int, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := cmd(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTokenCmd(t *testing.T) {
	_, path := sockServe(t, "")
	dir := t.TempDir()
	noAgent := filepath.Join(dir, "none.sock")
	tests := []struct {
		name    string
		args    []string
		code    int
		stdout  string
		stderrs string
	}{
		{"valid token", []string{"video", "--socket", path}, 0, "007video\n", ""},
		{"flags first", []string{"--socket", path, "video"}, 0, "007video\n", ""},
		{"unknown name", []string{"video2", "--socket", path}, 1, "", "not_found"},
		{"not received", []string{"signal", "--socket", path}, 1, "", "unavailable"},
		{"agent down", []string{"video", "--socket", noAgent}, 1, "", "connect to the agent"},
		{"no name", []string{"--socket", path}, 2, "", "Usage"},
		{"two names", []string{"a", "b", "--socket", path}, 2, "", "Usage"},
		{"both flags", []string{"video", "--socket", path, "--config", "x.yaml"}, 2, "", "not both"},
		{"bad flag", []string{"video", "--sock", path}, 2, "", "flag provided but not defined"},
		{"missing config", []string{"video", "--config", filepath.Join(dir, "nope.yaml")}, 2, "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := sockRun(t, runTokenCmd, tt.args...)
			if code != tt.code || out != tt.stdout || !strings.Contains(errs, tt.stderrs) {
				t.Errorf("token %v = %d, %q, %q; want %d, %q, stderr containing %q",
					tt.args, code, out, errs, tt.code, tt.stdout, tt.stderrs)
			}
		})
	}
}

// TestTokenCmdConfig: the socket path comes from the agent's config,
// relative to the config file, without the rest of the config mattering.
func TestTokenCmdConfig(t *testing.T) {
	dir := t.TempDir()
	sockServe(t, filepath.Join(dir, "run", "agent.sock"))
	cfg := filepath.Join(dir, "agent.yaml")
	config := "device_id: cam-42\nsecrets_nobody_reads: {x: 1}\nsocket:\n  path: run/agent.sock\n  mode: \"0660\"\n"
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := sockRun(t, runTokenCmd, "video", "--config", cfg)
	if code != 0 || out != "007video\n" {
		t.Fatalf("token --config = %d, %q, %q", code, out, errs)
	}
}

func TestSocketPathFromConfig(t *testing.T) {
	tests := []struct{ name, yaml, want, err string }{
		{"relative", "socket: {path: agent.sock}\n", "/etc/agora/agent.sock", ""},
		{"absolute", "socket:\n  path: /run/x.sock\n", "/run/x.sock", ""},
		{"no socket section", "device_id: cam-42\n", socket.DefaultPath, ""},
		{"empty file", "", socket.DefaultPath, ""},
		{"not yaml", "socket: [\n", "", "config: yaml"},
		{"path not a string", "socket: {path: {a: 1}}\n", "", "config: yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := socketPathFromConfig(strings.NewReader(tt.yaml), "/etc/agora")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %q, %v; want an error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
