package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"agoratokens/agent/client"
	"agoratokens/agent/socket"
)

// socketFlags finds the agent's socket for the token, status and watch
// commands: --socket PATH, or socket.path in the agent's --config FILE,
// or the default path.
type socketFlags struct {
	config string
	socket string
}

func (f *socketFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "the agent's config `FILE` (its socket.path is used)")
	fs.StringVar(&f.socket, "socket", "", "the agent's socket `PATH` (default "+socket.DefaultPath+")")
}

// path resolves the socket path from the flags.
func (f *socketFlags) path() (string, error) {
	switch {
	case f.config != "" && f.socket != "":
		return "", errors.New("give --config or --socket, not both")
	case f.socket != "":
		return f.socket, nil
	case f.config != "":
		file, err := os.Open(f.config)
		if err != nil {
			return "", fmt.Errorf("config: %w", err)
		}
		defer file.Close()
		return socketPathFromConfig(file, filepath.Dir(f.config))
	}
	return socket.DefaultPath, nil
}

// socketPathFromConfig reads only socket.path from an agent config (so
// that these commands work for a media-process user who may not read the
// agent's secrets), resolved against dir, the config file's directory.
// The full validation is check-config's job.
func socketPathFromConfig(r io.Reader, dir string) (string, error) {
	var cfg struct {
		Socket struct {
			Path string `yaml:"path"`
		} `yaml:"socket"`
	}
	if err := yaml.NewDecoder(r).Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("config: %w", err)
	}
	p := cfg.Socket.Path
	switch {
	case p == "":
		return socket.DefaultPath, nil
	case filepath.IsAbs(p):
		return p, nil
	}
	return filepath.Join(dir, p), nil
}

// parseArgs parses flags placed anywhere among the positional arguments
// (`token video --socket x` and `token --socket x video` both work) and
// returns the positional ones. ok is false after a usage error (printed)
// or -h; code is then the exit code.
func parseArgs(fs *flag.FlagSet, args []string) (pos []string, ok bool, code int) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, false, 0
			}
			return nil, false, 2
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, true, 0
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// agentCommand is one of the commands that talk to a running agent over
// its socket (token, status, watch): they share flags, argument checks,
// dialing and the form of their error messages.
type agentCommand struct {
	name   string
	fs     *flag.FlagSet
	sf     socketFlags
	stderr io.Writer
}

// newAgentCommand returns the command with the socket flags registered;
// usage lines are printed above the flags' defaults. More flags may be
// added to fs before dial.
func newAgentCommand(name string, stderr io.Writer, usage ...string) *agentCommand {
	a := &agentCommand{name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError), stderr: stderr}
	a.fs.SetOutput(stderr)
	a.fs.Usage = func() {
		for _, l := range usage {
			fmt.Fprintln(stderr, l)
		}
		a.fs.PrintDefaults()
	}
	a.sf.register(a.fs)
	return a
}

// dial parses args, checks the number of positional arguments with
// posOK (nil takes any), and connects to the agent. On failure c is nil,
// the reason has been printed and code is the exit code: 0 after -h, 2
// for a usage error, 1 if the agent cannot be reached.
func (a *agentCommand) dial(args []string, posOK func(n int) bool) (c *client.Client, pos []string, code int) {
	pos, ok, code := parseArgs(a.fs, args)
	if !ok {
		return nil, nil, code
	}
	if posOK != nil && !posOK(len(pos)) {
		a.fs.Usage()
		return nil, nil, 2
	}
	path, err := a.sf.path()
	if err != nil {
		a.fail(err)
		return nil, nil, 2
	}
	c, err = client.Dial(path)
	if err != nil {
		return nil, nil, a.fail(err)
	}
	return c, pos, 0
}

// fail prints err as the command's error and returns exit code 1.
func (a *agentCommand) fail(err error) int {
	fmt.Fprintf(a.stderr, "agora-token-agent %s: %v\n", a.name, err)
	return 1
}
