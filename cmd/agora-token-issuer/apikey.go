package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"agoratokens/issuer"
)

const apikeyUsage = `Usage:
  agora-token-issuer apikey add NAME --config FILE [--channels GLOB,...] [--uids RANGE|LIST]
        [--services rtc,rtm,chat,education] [--max-ttl DURATION] [--rate N/min]
      create an API key for the HTTP token API; the key is printed once,
      alone on the last line, and only its SHA-256 is stored
  agora-token-issuer apikey add NAME --config FILE --role operator
      a key for the fleet page (/fleet/): it reads the fleet, mints nothing
  agora-token-issuer apikey list --config FILE     the keys and their grants (never a key)
  agora-token-issuer apikey revoke NAME --config FILE
The keys live in the config's http.api_keys_file. A running issuer picks
changes up on reload (systemctl reload agora-token-issuer, or SIGHUP).

Grant defaults: any channel but the wildcard "*" (list "*" to allow it),
any uid or account, every service, limits.max_ttl, http.key_rate.
--uids limits identities to numbers: "1000-1999", "1,2,3", "1-9,100".
`

func runAPIKey(_ context.Context, args []string, stdout, stderr io.Writer) int {
	sub, rest, code, ok := subcommand("apikey", apikeyUsage, []string{"add", "list", "revoke"}, args, stdout, stderr)
	if !ok {
		return code
	}
	fs := subcommandFlags("apikey", sub, apikeyUsage, stderr)
	configPath := fs.String("config", "", "issuer config file")
	channels := fs.String("channels", "", "comma-separated channel `GLOB`s the key may mint for")
	uids := fs.String("uids", "", "numeric identities the key may mint for (`RANGE|LIST`)")
	services := fs.String("services", "", "comma-separated services: rtc, rtm, chat, education")
	maxTTL := fs.Duration("max-ttl", 0, "longest lifetime the key may ask for")
	rate := fs.String("rate", "", "the key's rate limit, `N/min`")
	role := fs.String("role", "", "operator: a key that reads the fleet (the fleet page) and mints nothing")
	want := 1
	if sub == "list" {
		want = 0
	}
	names, code, ok := parseNames(fs, rest, configPath, want, "key name", apikeyUsage, stderr)
	if !ok {
		return code
	}
	if sub != "add" && (*channels != "" || *uids != "" || *services != "" || *maxTTL != 0 || *rate != "" || *role != "") {
		fmt.Fprintf(stderr, "agora-token-issuer apikey %s: the grant flags belong to add\n", sub)
		return 2
	}
	file, err := apiKeysFile(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "agora-token-issuer apikey %s: %v\n", sub, err)
		return 1
	}
	switch sub {
	case "add":
		spec := issuer.APIKeySpec{Name: names[0], Role: *role, Channels: splitList(*channels), UIDs: *uids,
			Services: splitList(*services), MaxTTL: *maxTTL, Rate: *rate}
		key, err := issuer.AddAPIKey(file, spec, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "agora-token-issuer apikey add: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "Added API key %q to %s; reload the issuer (SIGHUP) to use it.\n"+
			"The key follows on its own line; it is not stored and cannot be shown again.\n", names[0], file)
		fmt.Fprintln(stdout, key)
	case "list":
		if err := listAPIKeys(file, stdout); err != nil {
			fmt.Fprintf(stderr, "agora-token-issuer apikey list: %v\n", err)
			return 1
		}
	case "revoke":
		if err := issuer.RevokeAPIKey(file, names[0]); err != nil {
			fmt.Fprintf(stderr, "agora-token-issuer apikey revoke: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "Revoked API key %q; reload the issuer (SIGHUP) for it to stop working.\n", names[0])
	}
	return 0
}

// apiKeysFile reads the issuer config (no secrets needed) for the path
// of http.api_keys_file.
func apiKeysFile(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read issuer config: %w", err)
	}
	cfg, err := issuer.ParseConfig(bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("issuer config %s: %w", path, err)
	}
	cfg.ResolvePaths(filepath.Dir(path))
	if cfg.HTTP.APIKeysFile == "" {
		return "", fmt.Errorf("issuer config %s: http.api_keys_file is not set (and listen, for the HTTP server); "+
			"init --http ADDR writes both", path)
	}
	return cfg.HTTP.APIKeysFile, nil
}

func listAPIKeys(file string, w io.Writer) error {
	keys, err := issuer.ListAPIKeys(file)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tGRANT\tSERVICES\tCHANNELS\tUIDS\tMAX TTL\tRATE\tCREATED")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, k := range keys {
		grant, services, channels := "own", strings.Join(k.Services, ","), strings.Join(k.Channels, ",")
		switch {
		case k.Role == issuer.RoleOperator:
			grant, services, channels = "operator (fleet view)", "-", "-"
		case k.Principal != "":
			grant, services, channels = "policy:"+k.Principal, "(policy)", "(policy)"
		default:
			if services == "" {
				services = "all"
			}
			if channels == "" {
				channels = "any"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, grant, services, channels,
			dash(k.UIDs), dash(k.MaxTTL), dash(k.Rate), dash(k.Created))
	}
	return tw.Flush()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
