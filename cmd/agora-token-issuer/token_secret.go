package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"agoratokens/accesstoken"
)

// Environment variables the token commands read. The certificate is taken
// from the environment or a file, never from a flag value, which any local
// user could read in ps.
const (
	envAppID       = "AGORA_APP_ID"
	envCertificate = "AGORA_APP_CERTIFICATE"
)

// maxCertificateFile bounds how much of a certificate file is read: it
// holds 32 hex characters and perhaps a newline.
const maxCertificateFile = 1024

// namedCertificate is an App Certificate and where it came from (a file
// name or the environment variable), which is all that may be shown.
type namedCertificate struct {
	source string
	cert   string
}

// readCertificateFile reads an App Certificate from path: 32 hex
// characters, surrounding whitespace ignored. A file that group members may
// write or others may read gets a warning on warn. No error quotes the
// file's content.
func readCertificateFile(path string, warn io.Writer) (namedCertificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return namedCertificate{}, fmt.Errorf("certificate file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return namedCertificate{}, fmt.Errorf("certificate file: %w", err)
	}
	if st.IsDir() {
		return namedCertificate{}, fmt.Errorf("certificate file %s is a directory", path)
	}
	if perm := st.Mode().Perm(); st.Mode().IsRegular() && perm&0o027 != 0 {
		fmt.Fprintf(warn, "warning: certificate file %s has mode %04o; other users may read or change it (chmod 600 %s)\n", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCertificateFile+1))
	if err != nil {
		return namedCertificate{}, fmt.Errorf("read certificate file %s: %w", path, err)
	}
	if len(b) > maxCertificateFile {
		return namedCertificate{}, fmt.Errorf("certificate file %s is larger than %d bytes; it should hold the 32 hex characters of the App Certificate", path, maxCertificateFile)
	}
	cert := strings.TrimSpace(string(b))
	if err := accesstoken.ValidateHex32("certificate in "+path, cert); err != nil {
		return namedCertificate{}, err
	}
	return namedCertificate{source: path, cert: cert}, nil
}

// certificateFromEnv reads $AGORA_APP_CERTIFICATE; ok is false when it is
// unset or empty.
func certificateFromEnv() (c namedCertificate, ok bool, err error) {
	v := strings.TrimSpace(os.Getenv(envCertificate))
	if v == "" {
		return namedCertificate{}, false, nil
	}
	if err := accesstoken.ValidateHex32("$"+envCertificate, v); err != nil {
		return namedCertificate{}, false, err
	}
	return namedCertificate{source: "$" + envCertificate, cert: v}, true, nil
}

// signingCertificate returns the certificate to sign with: the file given
// by --certificate-file, else $AGORA_APP_CERTIFICATE.
func signingCertificate(path string, warn io.Writer) (namedCertificate, error) {
	if path != "" {
		return readCertificateFile(path, warn)
	}
	c, ok, err := certificateFromEnv()
	if err != nil {
		return namedCertificate{}, err
	}
	if !ok {
		return namedCertificate{}, usagef("no App Certificate: give --certificate-file FILE or set $%s", envCertificate)
	}
	return c, nil
}

// appID returns --app-id, else $AGORA_APP_ID, checked to be 32 hex
// characters. required says whether a missing one is an error.
func appID(flagValue string, required bool) (string, error) {
	id, from := strings.TrimSpace(flagValue), "--app-id"
	if id == "" {
		id, from = strings.TrimSpace(os.Getenv(envAppID)), "$"+envAppID
	}
	if id == "" {
		if required {
			return "", usagef("no App ID: give --app-id ID or set $%s", envAppID)
		}
		return "", nil
	}
	if err := accesstoken.ValidateHex32("app id ("+from+")", id); err != nil {
		return "", err
	}
	return id, nil
}

// certificateFiles is a repeatable --certificate-file flag.
type certificateFiles []string

func (c *certificateFiles) String() string { return strings.Join(*c, ",") }

func (c *certificateFiles) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty file name")
	}
	*c = append(*c, s)
	return nil
}
