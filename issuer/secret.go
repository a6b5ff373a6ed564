package issuer

import (
	"fmt"
	"log/slog"

	"agoratokens/accesstoken"
	"agoratokens/secretfile"
)

// Secret is a value that must never be printed: an App Certificate or a
// broker password. Every way fmt, slog, JSON and YAML have of printing it
// prints "[redacted]"; use Reveal where the value itself is needed.
type Secret struct{ v string }

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

const redacted = "[redacted]"

// String implements fmt.Stringer.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer (the %#v verb).
func (s Secret) GoString() string { return redacted }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (JSON, YAML).
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

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
	return Secret{v: v}, nil
}

// readCertificateFile reads an App Certificate: a secret file holding 32
// hex characters.
func readCertificateFile(key, path string) (Secret, error) {
	s, err := readSecretFile(key, path)
	if err != nil {
		return Secret{}, err
	}
	if err := accesstoken.ValidateHex32("app certificate in "+path, s.v); err != nil {
		return Secret{}, fmt.Errorf("%s: %w", key, err)
	}
	return s, nil
}
