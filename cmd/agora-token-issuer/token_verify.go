package main

import (
	"errors"
	"fmt"
	"strings"

	"agoratokens/accesstoken"
	"agoratokens/issuer"
)

func tokenVerify(env *tokenEnv, args []string) error {
	fs := newFlagSet(env, "verify", "verify (--certificate-file F [--certificate-file G ...] | --config FILE) TOKEN|-\n\n"+
		"Check a token's signature against each certificate and name the one\n"+
		"that signed it (exit 0), or exit 1 if none did. --config tries every\n"+
		"certificate of an issuer config and names its id (kid). Without either,\n"+
		"$AGORA_APP_CERTIFICATE is tried. A token carrying a service type this\n"+
		"tool does not know is still verified.")
	var files certificateFiles
	fs.Var(&files, "certificate-file", "`file` holding an App Certificate (repeat for several)")
	configFile := fs.String("config", "", "issuer config `file` whose certificates to try")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one TOKEN (or - for stdin), got %d arguments", len(pos))
	}
	var certs []namedCertificate
	for _, f := range files {
		c, err := readCertificateFile(f, env.stderr)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	appIDWant := ""
	if *configFile != "" {
		cfg, err := issuer.LoadConfig(*configFile)
		if err != nil {
			return err
		}
		for _, c := range cfg.Certs() {
			certs = append(certs, namedCertificate{source: "kid " + c.ID, cert: c.Value.Reveal()})
		}
		appIDWant = cfg.AppID
	}
	if len(certs) == 0 {
		c, ok, err := certificateFromEnv()
		if err != nil {
			return err
		}
		if !ok {
			return usagef("no certificate to verify with: give --certificate-file FILE (repeatable), --config FILE, or set $%s", envCertificate)
		}
		certs = append(certs, c)
	}
	s, err := readArg(env, pos[0], "token", accesstoken.MaxTokenLen)
	if err != nil {
		return err
	}
	t, name, err := verifyToken(s, certs)
	if t != nil && appIDWant != "" && t.AppID != appIDWant {
		fmt.Fprintf(env.stderr, "warning: token app_id %s is not the config's app_id %s\n", t.AppID, appIDWant)
	}
	var unknown *accesstoken.UnknownServiceError
	if errors.As(err, &unknown) {
		fmt.Fprintf(env.stderr, "warning: %v; its signature was checked all the same\n", unknown)
		err = nil
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(env.stdout, "signed by %s\n", name)
	return err
}

// verifyToken parses token s and returns it and the source of the
// certificate that signed it. A token with an unknown service type is
// verified too; its *accesstoken.UnknownServiceError comes back with the
// name.
func verifyToken(s string, certs []namedCertificate) (*accesstoken.Token, string, error) {
	t, perr := accesstoken.Parse(s)
	var unknown *accesstoken.UnknownServiceError
	if perr != nil && !errors.As(perr, &unknown) {
		return nil, "", perr
	}
	plain := make([]string, len(certs))
	for i, c := range certs {
		plain[i] = c.cert
	}
	i, err := t.Verify(plain...)
	if errors.Is(err, accesstoken.ErrSignature) {
		names := make([]string, len(certs))
		for i, c := range certs {
			names[i] = c.source
		}
		return t, "", fmt.Errorf("token signature matches none of the %d certificate(s) tried (%s)", len(certs), strings.Join(names, ", "))
	}
	if err != nil {
		return t, "", err
	}
	return t, certs[i].source, perr
}
