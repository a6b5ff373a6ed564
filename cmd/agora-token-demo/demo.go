package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// demo is one run of the demo.
type demo struct {
	opts   options
	out    *timeline
	issuer *proc
	devs   []*camera
	logs   string
	cfg    string // the issuer's config file
	// stopWatching ends the demo's own watch of each agent, so that
	// stopping the agents is not reported as a lost connection.
	stopWatching context.CancelFunc
}

// camera is one simulated camera: its agent, its media client, and what
// each of them saw.
type camera struct {
	i     int
	id    string
	dir   string
	agent *proc
	media *proc

	mu      sync.Mutex
	handed  []string        // tokens the agent handed out, in order
	names   int             // distinct token names among them
	got     map[string]bool // tokens the media client took
	changed chan struct{}   // poked on every media client line
}

const marker = ".agora-token-demo"

func (d *demo) bin(name string) string { return filepath.Join(d.opts.bin, name) }

func (d *demo) run(ctx context.Context) error {
	for _, b := range []string{"agora-token-issuer", "agora-token-agent", "agora-media-sample"} {
		if _, err := os.Stat(d.bin(b)); err != nil {
			return fmt.Errorf("%s not built (run make demo, which builds it): %w", b, err)
		}
	}
	if err := d.prepareDir(); err != nil {
		return err
	}
	if err := d.setup(ctx); err != nil {
		return err
	}
	defer d.stopAll()

	if err := d.startIssuer(); err != nil {
		return err
	}
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	d.stopWatching = stopWatching
	for _, c := range d.devs {
		if err := d.startCamera(watchCtx, c); err != nil {
			return err
		}
	}

	restartAt := time.NewTimer(d.opts.duration * 35 / 100)
	rotateAt := time.NewTimer(d.opts.duration * 65 / 100)
	end := time.NewTimer(d.opts.duration)
	defer restartAt.Stop()
	defer rotateAt.Stop()
	defer end.Stop()
	interrupted := false
	for done := false; !done; {
		select {
		case <-ctx.Done():
			d.out.system("interrupted: stopping everything")
			done, interrupted = true, true
		case <-end.C:
			d.out.system("%s are up: stopping everything", d.opts.duration)
			done = true
		case <-restartAt.C:
			if err := d.restartBroker(ctx); err != nil {
				return err
			}
		case <-rotateAt.C:
			if err := d.rotate(); err != nil {
				return err
			}
		}
	}
	return d.finish(interrupted)
}

// prepareDir empties the demo directory, refusing to touch a non-empty
// directory the demo did not make.
func (d *demo) prepareDir() error {
	dir := d.opts.dir
	entries, err := os.ReadDir(dir)
	if err == nil && len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
			return fmt.Errorf("%s is not empty and was not made by the demo; choose another --dir", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	d.logs = filepath.Join(dir, "logs")
	if err := os.MkdirAll(d.logs, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, marker), nil, 0o600)
}

// setup writes the issuer's config and registers the cameras, with the
// same commands a user would type.
func (d *demo) setup(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	issuerDir := filepath.Join(d.opts.dir, "issuer")
	d.cfg = filepath.Join(issuerDir, "issuer.yaml")
	env := os.Environ()
	if f := os.Getenv("AGORA_APP_CERTIFICATE_FILE"); f != "" && os.Getenv("AGORA_APP_CERTIFICATE") == "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read AGORA_APP_CERTIFICATE_FILE: %w", err)
		}
		env = append(env, "AGORA_APP_CERTIFICATE="+strings.TrimSpace(string(b)))
	}
	real := os.Getenv("AGORA_APP_ID") != "" && (os.Getenv("AGORA_APP_CERTIFICATE") != "" || os.Getenv("AGORA_APP_CERTIFICATE_FILE") != "")
	if _, err := d.cli(ctx, env, d.bin("agora-token-issuer"), "init", issuerDir,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--ttl", d.opts.ttl.String()); err != nil {
		return err
	}
	if real {
		d.out.system("using your Agora project %s: these tokens work with Agora's servers", os.Getenv("AGORA_APP_ID"))
	} else {
		d.out.system("no AGORA_APP_ID and AGORA_APP_CERTIFICATE set: using a RANDOM DEMO app id and certificate")
		d.out.system("(the tokens are well-formed and verifiable here, but Agora's servers will refuse them)")
	}
	for i := 0; i < d.opts.devices; i++ {
		id := fmt.Sprintf("dev-%d", i+1)
		dir := filepath.Join(d.opts.dir, "devices", id)
		if _, err := d.cli(ctx, nil, d.bin("agora-token-issuer"), "device", "add", id,
			"--config", d.cfg, "--out", dir, "--local"); err != nil {
			return err
		}
		d.devs = append(d.devs, &camera{i: i, id: id, dir: dir, got: map[string]bool{}, changed: make(chan struct{}, 1)})
	}
	d.out.system("setup written to %s (issuer/ and devices/*/ are ready-made configs to copy)", d.opts.dir)
	d.out.system("  issuer:  %s serve --config %s", d.bin("agora-token-issuer"), d.cfg)
	d.out.system("  agents:  %s run --config %s", d.bin("agora-token-agent"), filepath.Join(d.opts.dir, "devices", "dev-N", "agent.yaml"))
	d.out.system("  logs:    %s", d.logs)
	return nil
}

// cli runs a set-up command to completion, returning its output.
func (d *demo) cli(ctx context.Context, env []string, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (d *demo) startIssuer() error {
	p, err := start("issuer", filepath.Join(d.logs, "issuer.log"), nil, nil, d.bin("agora-token-issuer"), "serve", "--config", d.cfg)
	if err != nil {
		return err
	}
	d.issuer = p
	d.out.system("issuer started with its embedded MQTT broker (pid %d)", p.cmd.Process.Pid)
	return nil
}

func (d *demo) startCamera(ctx context.Context, c *camera) error {
	cfg := filepath.Join(c.dir, "agent.yaml")
	p, err := start(c.id+" agent", filepath.Join(d.logs, c.id+"-agent.log"), nil, nil, d.bin("agora-token-agent"), "run", "--config", cfg)
	if err != nil {
		return err
	}
	c.agent = p
	sock := filepath.Join(c.dir, "agent.sock")
	d.out.device(c.i, c.id+" agent", "started (pid %d), socket %s", p.cmd.Process.Pid, sock)

	lines := make(chan string, 64)
	m, err := start(c.id+" media", filepath.Join(d.logs, c.id+"-media.log"), nil, lines, d.bin("agora-media-sample"), "--socket", sock)
	if err != nil {
		return err
	}
	c.media = m
	go d.followMedia(c, lines)
	go d.watchAgent(ctx, c, sock)
	return nil
}

// followMedia turns the media client's output into timeline lines and
// records which tokens it took.
func (d *demo) followMedia(c *camera, lines <-chan string) {
	for l := range lines {
		f := strings.Fields(l)
		if len(f) >= 3 && (f[0] == "JOIN" || f[0] == "RENEW") {
			c.mu.Lock()
			c.got[f[2]] = true
			c.mu.Unlock()
			verb := "joined the channel with"
			if f[0] == "RENEW" {
				verb = "called renewToken with"
			}
			d.out.device(c.i, c.id+" media", "%s the new %s token %s…", verb, f[1], short(f[2]))
		} else if len(f) > 0 {
			d.out.device(c.i, c.id+" media", "%s", l)
		}
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}
}

// restartBroker stops the issuer, and with it the embedded broker, for a
// few seconds: the agents keep their valid tokens and reconnect.
func (d *demo) restartBroker(ctx context.Context) error {
	d.out.system("── stopping the broker (the issuer and its embedded broker) for 5s: agents keep their tokens ──")
	if err := d.issuer.stop(10 * time.Second); err != nil {
		d.out.system("issuer stopped with: %v", err)
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-t.C:
	}
	d.out.system("── starting the broker again: agents reconnect and resubscribe ──")
	return d.startIssuer()
}

// rotate adds a second App Certificate, makes it the active one and tells
// the issuer to reload (SIGHUP). Tokens signed with the first stay valid;
// every renewal from now on is signed with the second.
func (d *demo) rotate() error {
	cert := os.Getenv("AGORA_APP_CERTIFICATE_2")
	if cert == "" {
		if os.Getenv("AGORA_APP_ID") != "" {
			d.out.system("── no AGORA_APP_CERTIFICATE_2 set for your project: skipping certificate rotation ──")
			return nil
		}
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		cert = hex.EncodeToString(b)
	}
	certFile := filepath.Join(filepath.Dir(d.cfg), "certificate-secondary")
	if err := os.WriteFile(certFile, []byte(cert+"\n"), 0o600); err != nil {
		return err
	}
	if err := addCertificate(d.cfg, "secondary", filepath.Base(certFile)); err != nil {
		return fmt.Errorf("rotate certificate: %w", err)
	}
	if err := d.issuer.signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal issuer: %w", err)
	}
	d.out.system("── rotated the App Certificate: kid \"secondary\" is now active (issuer reloaded by SIGHUP) ──")
	return nil
}

// finish stops the cameras, then checks that every token an agent handed
// out reached its media client (and, unless the demo was interrupted,
// that each camera saw a renewal).
func (d *demo) finish(interrupted bool) error {
	// Give each media client a moment to print what its agent has sent.
	deadline := time.Now().Add(5 * time.Second)
	var problems []string
	for _, c := range d.devs {
		c.waitReceived(deadline)
		c.mu.Lock()
		handed, renewals := len(c.handed), len(c.handed)-c.names
		missing := 0
		for _, tok := range c.handed {
			if !c.got[tok] {
				missing++
			}
		}
		c.mu.Unlock()
		d.out.device(c.i, c.id, "summary: %d tokens handed out (%d renewals), %d reached the media client", handed, renewals, handed-missing)
		switch {
		case handed == 0:
			problems = append(problems, c.id+": the agent handed out no token")
		case missing > 0:
			problems = append(problems, fmt.Sprintf("%s: %d tokens did not reach the media client", c.id, missing))
		case renewals < 1 && !interrupted:
			problems = append(problems, c.id+": no renewal happened (run longer than the ttl minus 30s)")
		}
	}
	d.stopWatching()
	d.stopAll()
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	d.out.system("every token reached its media client; configs are in %s", d.opts.dir)
	return nil
}

// waitReceived waits until the media client has taken every token the
// agent handed out, or until deadline.
func (c *camera) waitReceived(deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for !c.allReceived() {
		select {
		case <-c.changed:
		case <-t.C:
			return
		}
	}
}

func (c *camera) allReceived() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tok := range c.handed {
		if !c.got[tok] {
			return false
		}
	}
	return true
}

// stopAll stops media clients, agents, then the issuer. Safe to call
// twice.
func (d *demo) stopAll() {
	for _, c := range d.devs {
		if c.media != nil {
			_ = c.media.stop(5 * time.Second)
		}
	}
	for _, c := range d.devs {
		if c.agent != nil {
			if err := c.agent.stop(10 * time.Second); err != nil {
				d.out.device(c.i, c.id+" agent", "stopped with: %v", err)
			}
		}
	}
	if d.issuer != nil {
		if err := d.issuer.stop(10 * time.Second); err != nil {
			d.out.system("issuer stopped with: %v", err)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
