package issuer

import (
	"fmt"

	"agoratokens/accesstoken"
	"agoratokens/secretfile"
)

// Secret is a value that must never be printed (see secretfile.Secret):
// an App Certificate or a broker password.
type Secret = secretfile.Secret

// Certificate is one App Certificate and the id replies name it by (kid).
type Certificate struct {
	ID    string
	Value Secret
}

// readSecretFile reads a secret file (see package secretfile); key names
// the config key in errors.
func readSecretFile(key, path string) (Secret, error) {
	v, err := secretfile.Read(path)
	if err != nil {
		return Secret{}, fmt.Errorf("%s: %w", key, err)
	}
	return v, nil
}

// readCertificateFile reads an App Certificate: a secret file holding 32
// hex characters.
func readCertificateFile(key, path string) (Secret, error) {
	s, err := readSecretFile(key, path)
	if err != nil {
		return Secret{}, err
	}
	if err := accesstoken.ValidateHex32("app certificate in "+path, s.Reveal()); err != nil {
		return Secret{}, fmt.Errorf("%s: %w", key, err)
	}
	return s, nil
}
