package issuer

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"agoratokens/accesstoken"
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

// readSecretFile reads a secret from a file that only its owner (and
// group) may read, as ssh does for private keys: mode 0600 or 0640 or
// stricter. Surrounding whitespace is trimmed. key names the config key
// in errors; the value never appears in one.
func readSecretFile(key, path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return Secret{}, fmt.Errorf("%s: %w", key, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Secret{}, fmt.Errorf("%s: %w", key, err)
	}
	if !st.Mode().IsRegular() {
		return Secret{}, fmt.Errorf("%s: %s is not a regular file", key, path)
	}
	if perm := st.Mode().Perm(); perm&0o137 != 0 {
		return Secret{}, fmt.Errorf("%s: %s has mode %#o; a secret file must be 0600 or 0640 (chmod 600 %s)", key, path, perm, path)
	}
	buf := make([]byte, 4096)
	n, err := f.Read(buf)
	if err != nil && n == 0 {
		return Secret{}, fmt.Errorf("%s: read %s: %w", key, path, err)
	}
	if n == len(buf) {
		return Secret{}, fmt.Errorf("%s: %s is larger than %d bytes", key, path, len(buf)-1)
	}
	v := strings.TrimSpace(string(buf[:n]))
	if v == "" {
		return Secret{}, fmt.Errorf("%s: %s is empty", key, path)
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
