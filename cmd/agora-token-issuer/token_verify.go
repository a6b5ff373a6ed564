package main

import (
	"errors"
	"fmt"
	"strings"

	"agoratokens/accesstoken"
)

func tokenVerify(env *tokenEnv, args []string) error {
	fs := newFlagSet(env, "verify", "verify --certificate-file F [--certificate-file G ...] TOKEN|-\n\n"+
		"Check a token's signature against each certificate and name the one\n"+
		"that signed it (exit 0), or exit 1 if none did. Without\n"+
		"--certificate-file, $AGORA_APP_CERTIFICATE is tried. A token carrying a\n"+
		"service type this tool does not know is still verified.")
	var files certificateFiles
	fs.Var(&files, "certificate-file", "`file` holding an App Certificate (repeat for several)")
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
	if len(certs) == 0 {
		c, ok, err := certificateFromEnv()
		if err != nil {
			return err
		}
		if !ok {
			return usagef("no certificate to verify with: give --certificate-file FILE (repeatable) or set $%s", envCertificate)
		}
		certs = append(certs, c)
	}
	s, err := readArg(env, pos[0], "token", accesstoken.MaxTokenLen)
	if err != nil {
		return err
	}
	name, err := verifyToken(s, certs)
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

// verifyToken parses token s and returns the source of the certificate
// that signed it. A token with an unknown service type is verified too;
// its *accesstoken.UnknownServiceError comes back with the name.
func verifyToken(s string, certs []namedCertificate) (string, error) {
	t, perr := accesstoken.Parse(s)
	var unknown *accesstoken.UnknownServiceError
	if perr != nil && !errors.As(perr, &unknown) {
		return "", perr
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
		return "", fmt.Errorf("token signature matches none of the %d certificate(s) tried (%s)", len(certs), strings.Join(names, ", "))
	}
	if err != nil {
		return "", err
	}
	return certs[i].source, perr
}
