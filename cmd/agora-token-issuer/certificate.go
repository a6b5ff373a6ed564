package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"agoratokens/accesstoken"
	"agoratokens/issuer"
	"agoratokens/wire"
)

const certificateUsage = `Usage:
  agora-token-issuer certificate add ID --config FILE [--file PATH]
  agora-token-issuer certificate list --config FILE
  agora-token-issuer certificate remove ID --config FILE [--force]

add stores a new App Certificate (32 hex characters, from --file or else
the AGORA_APP_CERTIFICATE environment variable) in ID.cert beside the
config (mode 0600) and lists it in the config's certificates, keeping the
file's comments. It does not make it active: rotate --to ID does.

list shows each certificate's id, whether it is active, a fingerprint
(the first 8 hex characters of its SHA-256; never the certificate) and
until when a token signed with it may be live.

remove drops a certificate from the config. It refuses the active one,
and one that signed a token which may still be live (from the issuer's
record in state_dir, and from every running replica's status when the
broker is reachable), unless --force. The certificate's file is left for
you to delete.

Exit status: 0 ok, 1 failure or refusal, 2 usage error.
`

func runCertificate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, rest, code, ok := subcommand("certificate", certificateUsage, []string{"add", "list", "remove"}, args, stdout, stderr)
	if !ok {
		return code
	}
	fs := subcommandFlags("certificate", sub, certificateUsage, stderr)
	configPath := fs.String("config", "", "issuer config file (YAML)")
	file := fs.String("file", "", "add: read the certificate from this file")
	force := fs.Bool("force", false, "remove: even if its tokens may still be live")
	// The id comes first, flags after it (or before: both work).
	var id string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		id, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "agora-token-issuer certificate %s: unexpected argument %q\n", sub, fs.Arg(0))
		return 2
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "agora-token-issuer certificate %s: %s\n\n%s", sub, msg, certificateUsage)
		return 2
	}
	if *configPath == "" {
		return usageErr("--config FILE is required")
	}
	if (sub == "list") != (id == "") {
		if sub == "list" {
			return usageErr("list takes no id")
		}
		return usageErr("the certificate ID is required")
	}
	if id != "" {
		if err := wire.ValidateName("certificate id", id); err != nil {
			return usageErr(err.Error())
		}
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "agora-token-issuer certificate %s: %v\n", sub, err)
		return 1
	}
	var err error
	switch sub {
	case "add":
		err = certificateAdd(*configPath, id, *file, stdout)
	case "list":
		err = certificateList(*configPath, stdout)
	case "remove":
		err = certificateRemove(ctx, *configPath, id, *force, stdout, stderr)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

// fingerprint names a certificate without revealing it.
func fingerprint(cert string) string {
	h := sha256.Sum256([]byte(cert))
	return hex.EncodeToString(h[:4])
}

func certificateAdd(configPath, id, file string, stdout io.Writer) error {
	var value string
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		value = strings.TrimSpace(string(b))
	} else {
		value = strings.TrimSpace(os.Getenv("AGORA_APP_CERTIFICATE"))
		if value == "" {
			return errors.New("no certificate: give --file PATH or set AGORA_APP_CERTIFICATE")
		}
	}
	if err := accesstoken.ValidateHex32("the new certificate", value); err != nil {
		// The message names the problem, never the value.
		return errors.New("the new certificate is not 32 hex characters")
	}
	cfg, err := issuer.LoadConfig(configPath)
	if err != nil {
		return err
	}
	for _, c := range cfg.Certs() {
		if c.ID == id {
			return fmt.Errorf("certificate %q is already listed", id)
		}
		if c.Value.Reveal() == value {
			return fmt.Errorf("this certificate is already listed as %q", c.ID)
		}
	}
	doc, err := readConfigDoc(configPath)
	if err != nil {
		return err
	}
	name := id + ".cert"
	path := filepath.Join(filepath.Dir(configPath), name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store the certificate: %w", err)
	}
	_, werr := f.WriteString(value + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(path, 0o600) // whatever the umask
	}
	if werr == nil && len(cfg.Certificates) > 0 {
		// Owned like the certificates already there: the issuer's user
		// must read it even when root ran this command.
		if like, err := os.Stat(cfg.Certificates[0].File); err == nil {
			werr = chownLike(path, like)
		}
	}
	if werr == nil {
		werr = doc.addCertificate(id, name)
		if v, err := doc.value("active_certificate"); werr == nil && err == nil && v == nil {
			// One certificate could go without; two cannot.
			werr = doc.setScalar("active_certificate", cfg.ActiveCertificate)
		}
		if werr == nil {
			werr = doc.save()
		}
	}
	if werr != nil {
		os.Remove(path)
		return werr
	}
	fmt.Fprintf(stdout, "added certificate %s (fingerprint %s) in %s; not active: make it active with\n  agora-token-issuer rotate --to %s --config %s\n",
		id, fingerprint(value), path, id, configPath)
	return nil
}

func certificateList(configPath string, stdout io.Writer) error {
	cfg, err := issuer.LoadConfig(configPath)
	if err != nil {
		return err
	}
	ledger, err := issuer.ReadLedger(cfg.StateDir)
	if err != nil {
		return err
	}
	now := time.Now()
	fmt.Fprintf(stdout, "%-16s %-7s %-12s %s\n", "ID", "ACTIVE", "FINGERPRINT", "TOKENS LIVE UNTIL (this machine's record)")
	for _, c := range cfg.Certs() {
		active := ""
		if c.ID == cfg.ActiveCertificate {
			active = "yes"
		}
		until := "-"
		if e, ok := ledger[c.ID]; ok {
			until = time.Unix(e, 0).UTC().Format(time.RFC3339)
			if time.Unix(e, 0).Before(now) {
				until += " (passed)"
			}
		}
		fmt.Fprintf(stdout, "%-16s %-7s %-12s %s\n", c.ID, active, fingerprint(c.Value.Reveal()), until)
	}
	return nil
}

func certificateRemove(ctx context.Context, configPath, id string, force bool, stdout, stderr io.Writer) error {
	cfg, err := issuer.LoadConfig(configPath)
	if err != nil {
		return err
	}
	if id == cfg.ActiveCertificate {
		return fmt.Errorf("certificate %q is the active one; rotate to another first", id)
	}
	found := false
	for _, c := range cfg.Certificates {
		found = found || c.ID == id
	}
	if !found {
		return fmt.Errorf("certificate %q is not listed", id)
	}
	latest, err := issuer.ReadLedger(cfg.StateDir)
	if err != nil {
		return err
	}
	// The replicas' own records, when the broker can be reached.
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if c, err := issuer.DialTool(bctx, cfg, "agora-token-issuer-cert"); err != nil {
		fmt.Fprintf(stderr, "note: cannot reach the broker (%v); only this machine's record of signed tokens was checked\n", err)
	} else {
		snap, err := issuer.ReadSnapshot(bctx, c, cfg.Topics(), nil, false)
		c.Disconnect(100)
		if err != nil {
			fmt.Fprintf(stderr, "note: cannot read the replicas' statuses (%v); only this machine's record was checked\n", err)
		} else {
			latest = snap.LatestExpiry(latest)
			if cp := snap.Campaign(); cp != nil && cp.To == id {
				return fmt.Errorf("certificate %q is the target of the rotation campaign %s", id, cp.ID)
			}
		}
	}
	if e := time.Unix(latest[id], 0); latest[id] > 0 && time.Now().Before(e) && !force {
		return fmt.Errorf("a token signed with %q may be live until %s (in %v); wait, or use --force",
			id, e.UTC().Format(time.RFC3339), time.Until(e).Round(time.Second))
	}
	doc, err := readConfigDoc(configPath)
	if err != nil {
		return err
	}
	if err := doc.removeCertificate(id); err != nil {
		return err
	}
	if err := doc.save(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed certificate %s from %s; reload the issuers (SIGHUP), then delete its file and disable it in Agora Console\n", id, configPath)
	return nil
}
