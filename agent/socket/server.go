// Package socket is the agent's local handoff: a Unix stream socket that
// serves the device's tokens to media processes as newline-delimited JSON
// (get, watch, status, renew), pushing every renewal to watchers. Callers
// are checked with SO_PEERCRED; a slow client is dropped, never waited
// for. The protocol is written down in docs/socket.md.
package socket

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"agoratokens/agent"
	"agoratokens/agent/socketproto"
	"agoratokens/clock"
)

// DefaultPath is where the agent listens unless configured otherwise.
const DefaultPath = socketproto.DefaultPath

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// Path of the socket file; default DefaultPath.
	Path string
	// Mode of the socket file; default 0660.
	Mode os.FileMode
	// Group owning the socket file: a group name or a numeric gid;
	// empty keeps the agent's group.
	Group string
	// AllowUIDs may connect, besides the agent's own uid and root (0),
	// which always may.
	AllowUIDs []int
	// AllowGIDs may connect (as primary or supplementary group); empty
	// means the socket file's group.
	AllowGIDs []int
	// MaxClients is how many connections are served at once; default 32.
	MaxClients int
	// QueueLen is how many lines may wait for one slow client before it
	// is dropped; default 64.
	QueueLen int
	// Device is reported by the status op when the Source leaves it empty.
	Device string
	// Clock stamps what the server reports (expires_in) and paces its
	// retries (subscribing to the engine again, accepting again after
	// running out of descriptors); default clock.Real(). Its Now must carry a
	// monotonic reading, like the engine's: tokens expire on it. (I/O
	// deadlines on connections are the kernel's, on real time.)
	Clock clock.Clock
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Server serves an agent.Source on a Unix socket.
type Server struct {
	cfg   Config
	gid   int // socket file group, -1 to leave as created
	src   agent.Source
	log   *slog.Logger
	ready chan struct{}
	hub   *hub
}

// New validates cfg, fills its defaults and returns a server for src.
func New(cfg Config, src agent.Source) (*Server, error) {
	if src == nil {
		return nil, errors.New("socket: nil source")
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if len(cfg.Path) > 107 {
		return nil, fmt.Errorf("socket: path %q is longer than a Unix socket address allows (107 bytes)", cfg.Path)
	}
	if cfg.Mode == 0 {
		cfg.Mode = 0o660
	}
	if cfg.Mode&^fs.ModePerm != 0 {
		return nil, fmt.Errorf("socket: mode %v: only permission bits may be set", cfg.Mode)
	}
	gid := -1
	if cfg.Group != "" {
		g, err := lookupGroup(cfg.Group)
		if err != nil {
			return nil, fmt.Errorf("socket: group: %w", err)
		}
		gid = g
	}
	// The agent's own uid and root may always connect.
	cfg.AllowUIDs = append([]int{os.Geteuid(), 0}, cfg.AllowUIDs...)
	if len(cfg.AllowGIDs) == 0 {
		if gid >= 0 {
			cfg.AllowGIDs = []int{gid}
		} else {
			cfg.AllowGIDs = []int{os.Getegid()}
		}
	}
	switch {
	case cfg.MaxClients == 0:
		cfg.MaxClients = 32
	case cfg.MaxClients < 0:
		return nil, fmt.Errorf("socket: max clients %d: must be positive", cfg.MaxClients)
	}
	switch {
	case cfg.QueueLen == 0:
		cfg.QueueLen = 64
	case cfg.QueueLen < 0:
		return nil, fmt.Errorf("socket: queue length %d: must be positive", cfg.QueueLen)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, gid: gid, src: src, log: cfg.Logger.With("component", "socket"),
		ready: make(chan struct{})}
	s.hub = newHub(s)
	return s, nil
}

// lookupGroup resolves a group name or numeric gid.
func lookupGroup(g string) (int, error) {
	if n, err := strconv.Atoi(g); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("gid %d: must not be negative", n)
		}
		return n, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", g, err)
	}
	return strconv.Atoi(grp.Gid)
}

// Ready is closed once the socket accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Path is the socket's path.
func (s *Server) Path() string { return s.cfg.Path }

// Run listens and serves until ctx ends, then closes every client
// (flushing what was queued for it) and removes the socket file.
func (s *Server) Run(ctx context.Context) error {
	ln, err := s.listen()
	if err != nil {
		return err
	}
	s.log.Info("socket listening", "path", s.cfg.Path, "mode", fmt.Sprintf("%#o", s.cfg.Mode))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribed before the first client can watch: an event between a
	// watcher's snapshot and a later subscription would never reach it.
	events, unsubscribe := s.src.Subscribe()
	var wg sync.WaitGroup
	wg.Go(func() { s.hub.run(ctx, events, unsubscribe) })
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
	})
	close(s.ready)

	acceptErr := s.accept(ctx, ln, &wg)
	if acceptErr != nil {
		cancel()
	}
	wg.Wait()
	s.log.Info("socket closed", "path", s.cfg.Path)
	return acceptErr
}

// accept serves each connection ln accepts until ctx ends (nil) or
// accepting fails for good. Running out of descriptors or kernel memory
// passes (a client hangs up, a flood ends): the server waits, longer each
// time up to a second, and tries again rather than stop the agent; the
// waiting connections stay queued meanwhile.
func (s *Server) accept(ctx context.Context, ln *net.UnixListener, wg *sync.WaitGroup) error {
	failures := 0
	for {
		c, err := ln.AcceptUnix()
		if ctx.Err() != nil {
			if c != nil {
				c.Close()
			}
			return nil
		}
		if err != nil {
			if !transientAccept(err) {
				return fmt.Errorf("socket: accept: %w", err)
			}
			if failures++; failures == 1 {
				s.log.Warn("socket cannot accept connections; retrying", "err", err)
			}
			t := s.cfg.Clock.NewTimer(acceptDelay(failures))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C():
			}
			continue
		}
		if failures > 0 {
			s.log.Info("socket accepts connections again", "failed_accepts", failures)
			failures = 0
		}
		wg.Go(func() { s.serve(ctx, c) })
	}
}

// transientAccept reports whether an accept error passes by itself: out
// of descriptors (process or system) or of kernel memory.
func transientAccept(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// acceptDelay is the pause after the n-th accept failure in a row: 5 ms,
// doubling, at most a second.
func acceptDelay(n int) time.Duration {
	d := 5 * time.Millisecond
	for i := 1; i < n && d < time.Second; i++ {
		d *= 2
	}
	return min(d, time.Second)
}

// listen creates the socket file: a stale socket left by a dead agent is
// removed, anything else at the path is an error.
func (s *Server) listen() (*net.UnixListener, error) {
	path := s.cfg.Path
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket: listen: %w", err)
	}
	// Until chmod the file has the umask's mode; the peer check still
	// guards it in that instant.
	if s.gid >= 0 {
		if err := os.Chown(path, -1, s.gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket: group of %s: %w", path, err)
		}
	}
	if err := os.Chmod(path, s.cfg.Mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket: mode of %s: %w", path, err)
	}
	return ln, nil
}

// removeStale removes path if it is a socket nobody listens on. A live
// socket (another agent) or any other kind of file is an error.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket: %s exists and is not a socket (%s); refusing to remove it", path, kindOf(fi.Mode()))
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("socket: %s is in use by another process", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("socket: remove stale socket: %w", err)
	}
	return nil
}

// kindOf names a file type for an error message.
func kindOf(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return m.Type().String()
}
