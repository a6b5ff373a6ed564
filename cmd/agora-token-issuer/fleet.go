package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"agoratokens/issuer"
)

const fleetUsage = `Usage: agora-token-issuer fleet status --config FILE [filters] [--json]

Reads every device's retained status from the issuer's broker (as the
issuer's user; with the embedded broker, serve must be running) and
prints each device: online or not, agent version, each token's kid and
time left, and when its status last changed; then the totals per kid
and per state. Works whether or not serve runs on an external broker.

Filters (all must match):
  --offline           devices offline only
  --expiring D        devices holding a token that expires within D
  --kid ID            devices holding a token signed with ID
  --device GLOB       device ids matching GLOB (path.Match syntax)

Exit status: 0 ok, 1 failure (e.g. no broker), 2 usage error.
`

// fleetFilter selects devices.
type fleetFilter struct {
	offline  bool
	expiring time.Duration
	kid      string
	glob     string
}

func (f fleetFilter) match(d *issuer.DeviceRecord, now time.Time) bool {
	if f.offline && d.Online {
		return false
	}
	if f.glob != "" {
		if ok, _ := path.Match(f.glob, d.ID); !ok {
			return false
		}
	}
	if f.kid != "" && !slices.Contains(d.KIDs(), f.kid) {
		return false
	}
	if f.expiring > 0 {
		e := d.EarliestExpiry()
		if e == 0 || time.Unix(e, 0).Sub(now) > f.expiring {
			return false
		}
	}
	return true
}

func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "status" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, fleetUsage)
			return 0
		}
		fmt.Fprint(stderr, fleetUsage)
		return 2
	}
	fs := flag.NewFlagSet("fleet status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, fleetUsage+"\nOptions:\n"); fs.PrintDefaults() }
	configPath := fs.String("config", "", "issuer config file (YAML)")
	var f fleetFilter
	fs.BoolVar(&f.offline, "offline", false, "only devices offline")
	fs.DurationVar(&f.expiring, "expiring", 0, "only devices with a token expiring within this duration")
	fs.StringVar(&f.kid, "kid", "", "only devices holding a token signed with this certificate id")
	fs.StringVar(&f.glob, "device", "", "only device ids matching this glob")
	asJSON := fs.Bool("json", false, "print JSON (for scripts)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the broker")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *configPath == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "agora-token-issuer fleet status: --config FILE is required, and no arguments\n")
		return 2
	}
	if f.glob != "" {
		if _, err := path.Match(f.glob, ""); err != nil {
			fmt.Fprintf(stderr, "agora-token-issuer fleet status: --device %q: %v\n", f.glob, err)
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	snap, _, err := readFleet(ctx, *configPath)
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer fleet status: %v\n", err)
		return 1
	}
	now := time.Now()
	var sel []issuer.DeviceRecord
	for _, d := range snap.Devices.Snapshot() {
		if f.match(&d, now) {
			sel = append(sel, d)
		}
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	if *asJSON {
		writeFleetJSON(w, sel, snap, now)
		return 0
	}
	writeFleetTable(w, sel, snap, now)
	return 0
}

// readFleet loads the config and reads the fleet's retained statuses.
func readFleet(ctx context.Context, configPath string) (*issuer.Snapshot, *issuer.Config, error) {
	cfg, err := issuer.LoadConfig(configPath)
	if err != nil {
		return nil, nil, err
	}
	c, err := issuer.DialTool(ctx, cfg, "agora-token-issuer-fleet")
	if err != nil {
		return nil, nil, err
	}
	defer c.Disconnect(100)
	snap, err := issuer.ReadSnapshot(ctx, c, cfg.Topics(), nil, false)
	if err != nil {
		return nil, nil, err
	}
	return snap, cfg, nil
}

func writeFleetJSON(w io.Writer, sel []issuer.DeviceRecord, snap *issuer.Snapshot, now time.Time) {
	out := issuer.NewFleetStatus(sel, snap.Devices.Malformed(), snap.ReplicaStatuses(), now)
	_ = out.Write(w, true)
}

func writeFleetTable(w io.Writer, sel []issuer.DeviceRecord, snap *issuer.Snapshot, now time.Time) {
	fmt.Fprintf(w, "%-24s %-7s %-10s %-40s %s\n", "DEVICE", "ONLINE", "AGENT", "TOKENS (kid, time left)", "CHANGED")
	for _, d := range sel {
		online := "no"
		if d.Online {
			online = "yes"
		}
		var toks []string
		for _, t := range d.Tokens {
			toks = append(toks, fmt.Sprintf("%s:%s %s", t.Name, t.KID, left(time.Unix(t.ExpiresAt, 0).Sub(now))))
		}
		tokens := strings.Join(toks, ", ")
		if tokens == "" {
			tokens = "-"
		}
		changed := "-"
		if d.At > 0 {
			changed = time.Unix(d.At, 0).UTC().Format(time.RFC3339)
		}
		for _, f := range d.Refused {
			name := f.Name
			if name == "" {
				name = "all"
			}
			tokens += " (refused " + name + ": " + f.Code + ")"
		}
		agent := d.Agent
		if agent == "" {
			agent = "-"
		}
		fmt.Fprintf(w, "%-24s %-7s %-10s %-40s %s\n", d.ID, online, agent, tokens, changed)
	}
	t := issuer.CountFleet(sel, snap.Devices.Malformed())
	fmt.Fprintf(w, "\n%d devices: %d online, %d offline\n", t.Devices, t.Online, t.Offline)
	kids := make([]string, 0, len(t.PerKID))
	for k := range t.PerKID {
		kids = append(kids, k)
	}
	slices.Sort(kids)
	for _, k := range kids {
		fmt.Fprintf(w, "kid %-16s %d devices\n", k, t.PerKID[k])
	}
	if t.Malformed > 0 {
		fmt.Fprintf(w, "%d malformed statuses ignored\n", t.Malformed)
	}
	reps := snap.ReplicaStatuses()
	names := make([]string, 0, len(reps))
	for n := range reps {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		r := reps[n]
		fmt.Fprintf(w, "issuer %s: %s, signing with %s\n", n, r.State, r.Active)
	}
}

// left renders a time left, "expired" when it is past.
func left(d time.Duration) string {
	if d <= 0 {
		return "expired"
	}
	return d.Round(time.Second).String()
}
