package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"agoratokens/issuer"
)

const rotateUsage = `Usage: agora-token-issuer rotate --to ID --config FILE [--rate N] [--wait] [--timeout D]

Makes certificate ID (listed in the config: see certificate add) the
active one on every running issuer replica, and has them push tokens
signed with it to every online device that holds a token of another
certificate, --rate devices a second in all (default 50), the
earliest-expiring first. Offline devices get new tokens when they next
ask. The campaign is a retained message on the broker: replicas started
later follow it too. The config's active_certificate is set to ID as
well, so that a restart keeps it. Rotating back (an abort) is the same
command with the old ID.

--wait follows the campaign until every online device holds only ID
tokens, then says when the old certificate is safe to disable: once the
latest expiry of any token signed with it has passed.

Exit status: 0 started (or, with --wait, complete), 1 failure, 2 usage
error, 3 --timeout ended the wait before the campaign was complete.

Options:
`

func runRotate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, rotateUsage); fs.PrintDefaults() }
	configPath := fs.String("config", "", "issuer config file (YAML)")
	to := fs.String("to", "", "id of the certificate to make active")
	rate := fs.Float64("rate", issuer.DefaultCampaignRate, "devices pushed per second, over all replicas")
	wait := fs.Bool("wait", false, "follow the campaign until it is complete")
	timeout := fs.Duration("timeout", 0, "with --wait: give up after this long (exit 3); 0 waits forever")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "agora-token-issuer rotate: %s\n\n", msg)
		fs.Usage()
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *configPath == "":
		return usageErr("--config FILE is required")
	case *to == "":
		return usageErr("--to ID is required")
	case *rate <= 0 || *rate > 100_000:
		return usageErr(fmt.Sprintf("--rate %v is not between 0 and 100000", *rate))
	case *timeout < 0:
		return usageErr("--timeout is negative")
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "agora-token-issuer rotate: %v\n", err)
		return 1
	}
	cfg, err := issuer.LoadConfig(*configPath)
	if err != nil {
		return fail(err)
	}
	listed := false
	for _, c := range cfg.Certificates {
		listed = listed || c.ID == *to
	}
	if !listed {
		return fail(fmt.Errorf("certificate %q is not in the config's certificates; add it first (certificate add %s --config %s)", *to, *to, *configPath))
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := issuer.DialTool(dctx, cfg, "agora-token-issuer-rotate")
	cancel()
	if err != nil {
		return fail(err)
	}
	defer c.Disconnect(250)
	if cfg.ActiveCertificate != *to {
		doc, err := readConfigDoc(*configPath)
		if err == nil {
			err = doc.setScalar("active_certificate", *to)
		}
		if err == nil {
			err = doc.save()
		}
		if err != nil {
			return fail(fmt.Errorf("set active_certificate in %s: %w", *configPath, err))
		}
		fmt.Fprintf(stdout, "%s: active_certificate is now %s (copy it to every replica's config)\n", *configPath, *to)
	}
	cp := issuer.NewCampaign(*to, *rate, time.Now())
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = issuer.PublishCampaign(pctx, c, cfg.Topics(), cp)
	cancel()
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "campaign %s: every replica now signs with %s and pushes it to the online devices, %v a second\n", cp.ID, *to, *rate)
	if !*wait {
		fmt.Fprintf(stdout, "follow it with: agora-token-issuer fleet status --config %s --kid %s\n", *configPath, *to)
		return 0
	}
	wctx := ctx
	if *timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	local, err := issuer.ReadLedger(cfg.StateDir)
	if err != nil {
		fmt.Fprintf(stderr, "note: %v; using the replicas' records only\n", err)
	}
	snap, err := issuer.ReadSnapshot(wctx, c, cfg.Topics(), nil, true)
	if err != nil {
		if wctx.Err() != nil && ctx.Err() == nil {
			fmt.Fprintln(stdout, "timed out before the fleet's statuses arrived")
			return 3
		}
		return fail(err)
	}
	// The local record and the replicas' (the latest of each wins), with
	// a bound for the certificates neither has a record of.
	latest := func() map[string]int64 {
		return issuer.BoundUnrecorded(cfg, *to, snap.LatestExpiry(local), time.Unix(cp.StartedAt, 0))
	}
	return followCampaign(wctx, ctx, snap, *to, latest, stdout)
}

// followCampaign shows the campaign's progress until it is complete (0)
// or wctx ends (3; 1 if the parent ctx ended, e.g. SIGINT).
func followCampaign(wctx, parent context.Context, snap *issuer.Snapshot, to string, latest func() map[string]int64, stdout io.Writer) int {
	tty := isTerminal(stdout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	startDone := -1
	last := ""
	for {
		changed := snap.Devices.Changed()
		now := time.Now()
		p := issuer.CampaignProgress(to, snap.Devices.Snapshot(), snap.ReplicaStatuses(), latest(), now)
		if startDone < 0 {
			startDone = p.Done
		}
		line := progressLine(&p, startDone, time.Since(start), tty)
		if line != last || tty {
			if tty {
				fmt.Fprintf(stdout, "\r%s\x1b[K", line)
			} else if line != last {
				fmt.Fprintln(stdout, line)
			}
			last = line
		}
		if p.Complete() {
			if tty {
				fmt.Fprintln(stdout)
			}
			writeVerdict(stdout, &p, now)
			return 0
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-wctx.Done():
			if tty {
				fmt.Fprintln(stdout)
			}
			writeVerdict(stdout, &p, now)
			if parent.Err() != nil {
				return 1
			}
			return 3
		}
	}
}

// progressLine renders one line of progress: a bar on a terminal.
func progressLine(p *issuer.Progress, startDone int, elapsed time.Duration, tty bool) string {
	total := p.Done + p.ToDo
	rate := 0.0
	if s := elapsed.Seconds(); s >= 1 {
		rate = float64(p.Done-startDone) / s
	}
	togo := "?"
	if p.ToDo == 0 {
		togo = "0s"
	} else if rate > 0 {
		togo = (time.Duration(float64(p.ToDo)/rate) * time.Second).Round(time.Second).String()
	}
	text := fmt.Sprintf("%d/%d online devices on %s, %d to do, %d stragglers offline, %.1f devices/s, %s to go",
		p.Done, total, p.To, p.ToDo, p.Stragglers, rate, togo)
	if len(p.Behind) > 0 {
		text += fmt.Sprintf("; replicas not yet on %s: %s", p.To, strings.Join(p.Behind, ", "))
	}
	if !tty {
		return text
	}
	const width = 30
	filled := width
	if total > 0 {
		filled = width * p.Done / total
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "] " + text
}

// writeVerdict says whether the campaign is complete and when the old
// certificates are safe to disable, and lists what is pending.
func writeVerdict(w io.Writer, p *issuer.Progress, now time.Time) {
	old := strings.Join(p.OldKIDs, ", ")
	if old == "" {
		old = "the old certificate"
	}
	switch {
	case !p.Complete():
		fmt.Fprintf(w, "NOT COMPLETE: %d online devices still hold tokens of %s", p.ToDo, old)
		if p.Replicas == 0 {
			fmt.Fprint(w, "; no issuer replica is running")
		}
		fmt.Fprintln(w, ". Do not disable the old certificate.")
	case p.Safe(now):
		fmt.Fprintf(w, "COMPLETE: every online device holds only %s tokens, and no token of %s can be live: SAFE to disable %s now.\n", p.To, old, old)
	default:
		fmt.Fprintf(w, "COMPLETE: every online device holds only %s tokens. %s is NOT yet safe to disable: ", p.To, old)
		if p.SafeAt.After(now) {
			fmt.Fprintf(w, "a token signed with it may be live until %s (in %v)", p.SafeAt.UTC().Format(time.RFC3339), p.SafeAt.Sub(now).Round(time.Second))
		}
		if p.Stragglers > 0 {
			fmt.Fprintf(w, "; %d offline devices hold one", p.Stragglers)
		}
		fmt.Fprintln(w, ".")
	}
	for _, d := range p.Pending {
		fmt.Fprintf(w, "  pending: %s\n", d)
	}
	for _, r := range p.Behind {
		fmt.Fprintf(w, "  replica not on %s: %s\n", p.To, r)
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
