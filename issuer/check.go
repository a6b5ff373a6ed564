package issuer

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Check writes a summary of what Load read from the config at path to w.
// The summary never contains a secret.
func Check(path string, l *Loaded, w io.Writer) {
	st := l.state()
	c := st.cfg
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("config:       %s", path)
	p("app_id:       %s", c.AppID)
	ids := make([]string, 0, len(c.Certificates))
	for _, cc := range c.Certificates {
		id := cc.ID
		if id == c.ActiveCertificate {
			id += " (active)"
		}
		ids = append(ids, id)
	}
	p("certificates: %s", strings.Join(ids, ", "))
	if n := c.Broker.NATS; n != nil {
		p("broker:       %s", n.describe())
	} else if e := c.Broker.Embedded; e != nil {
		tls := "plain TCP"
		if e.TLSCertFile != "" {
			tls = "TLS"
		}
		p("broker:       embedded on %s (%s), device credentials in %s", e.Listen, tls, e.CredentialsFile)
	} else {
		user := "anonymous"
		if c.Broker.Username != "" {
			user = "user " + c.Broker.Username
			if c.Broker.PasswordFile != "" {
				user += " with password file"
			}
		}
		p("broker:       %s as %s", c.Broker.URL, user)
	}
	group := "none (a single issuer)"
	if c.ShareGroup != "" {
		group = c.ShareGroup
	}
	p("topics:       %s (share group: %s)", c.Topics().AllReqs(), group)
	p("limits:       default ttl %v, max ttl %v, %d requests/min per device (burst %d), max payload %d bytes",
		c.Limits.DefaultTTL, c.Limits.MaxTTL, c.Limits.Rate.PerMinute, c.Limits.Rate.Burst, c.Limits.MaxPayload)
	p("policy:       %s: %d rule(s), %d deny glob(s)", c.PolicyFile, len(st.policy.Rules), len(st.policy.Deny))
	for _, r := range st.policy.Rules {
		names := make([]string, 0, len(r.Tokens))
		for n, t := range r.Tokens {
			names = append(names, fmt.Sprintf("%s (%s, %v)", n, t.Service, t.TTL))
		}
		slices.Sort(names)
		p("  %-12q → %s", r.Match, strings.Join(names, ", "))
	}
	switch {
	case c.Listen == "":
		p("http:         off")
	case st.keys == nil:
		p("http:         %s: health and metrics; token API off", c.Listen)
	default:
		p("http:         %s: health, metrics and token API (%d key(s))", c.Listen, len(st.keys.entries))
	}
	if st.http.anonymous != nil {
		p("http:         INSECURE: callers without a key may mint tokens (http.insecure_allow_anonymous)")
	}
	if st.http.cert != nil {
		p("http:         TLS with %s", c.HTTP.TLSCertFile)
	}
	p("log_level:    %s", c.LogLevel)
}
