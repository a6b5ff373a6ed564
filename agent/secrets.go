package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ReadSecrets reads the broker password file or the HTTP bearer token
// file named in the config. A secret file must not be writable by its
// group or readable by others (0600 or 0640); its content, trailing
// newline dropped, is never logged or shown.
func (c *Config) ReadSecrets() error {
	if c.Broker != nil && c.Broker.PasswordFile != "" && c.Broker.password == nil {
		v, err := readSecretFile(c.Broker.PasswordFile)
		if err != nil {
			return fmt.Errorf("broker.password_file: %w", err)
		}
		c.Broker.password = &secret{v}
	}
	if c.HTTP != nil && c.HTTP.BearerTokenFile != "" && c.HTTP.bearer == nil {
		v, err := readSecretFile(c.HTTP.BearerTokenFile)
		if err != nil {
			return fmt.Errorf("http.bearer_token_file: %w", err)
		}
		c.HTTP.bearer = &secret{v}
	}
	return nil
}

func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o027 != 0 {
		return "", fmt.Errorf("%s has mode %04o: a secret file must be 0600 or 0640", path, perm)
	}
	buf := make([]byte, 4097)
	n, err := f.Read(buf)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if n > 4096 {
		return "", fmt.Errorf("%s is over 4 KiB", path)
	}
	v := strings.TrimRight(string(buf[:n]), "\r\n")
	if v == "" || strings.ContainsAny(v, "\r\n") {
		return "", errors.New(path + " must hold the secret on one line")
	}
	return v, nil
}
