// Command agora-token-demo runs the whole system on one machine, as
// `make demo` does: an issuer with its embedded broker on loopback, a few
// agents standing in for cameras, and a sample media client per agent. It
// prints a live timeline, restarts the broker and rotates the App
// Certificate part way through, and exits 0 only if every token an agent
// was handed reached its media client.
//
// It sets everything up with the same commands a user would run:
// `agora-token-issuer init` and `agora-token-issuer device add`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// options is what the command line sets.
type options struct {
	bin      string        // directory holding the built binaries
	dir      string        // where the generated setup goes
	devices  int           // simulated cameras
	ttl      time.Duration // token lifetime in the policy
	duration time.Duration // stop by itself after this long
	color    bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agora-token-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.bin, "bin", "bin", "directory with agora-token-issuer, agora-token-agent and agora-media-sample")
	fs.StringVar(&o.dir, "dir", "demo-run", "directory for the generated configs, state and logs (emptied first)")
	fs.IntVar(&o.devices, "devices", 3, "number of simulated cameras (1-9)")
	fs.DurationVar(&o.ttl, "ttl", 60*time.Second, "token lifetime (renewal starts 30s before expiry)")
	fs.DurationVar(&o.duration, "duration", 3*time.Minute, "stop by itself after this long")
	fs.BoolVar(&o.color, "color", isTerminal(stdout), "colour the timeline")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.devices < 1 || o.devices > 9 {
		fmt.Fprintln(stderr, "agora-token-demo: --devices must be 1..9")
		return 2
	}
	if o.ttl <= 30*time.Second {
		fmt.Fprintln(stderr, "agora-token-demo: --ttl must be longer than the 30s renewal margin")
		return 2
	}
	var err error
	if o.bin, err = filepath.Abs(o.bin); err == nil {
		o.dir, err = filepath.Abs(o.dir)
	}
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-demo: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{opts: o, out: newTimeline(stdout, o.color)}
	if err := d.run(ctx); err != nil {
		fmt.Fprintf(stderr, "agora-token-demo: %v\n", err)
		return 1
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
