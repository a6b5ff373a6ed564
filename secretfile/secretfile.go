// Package secretfile reads a secret (App Certificate, broker password,
// API key) from a file, as both binaries keep them: never on a command
// line, never in the config itself. It refuses a file others may read,
// as ssh does for private keys, and its errors name the file but never
// quote what is in it. What it reads is a Secret, which no printing,
// logging or marshalling shows.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Secret is a value that must never be printed: an App Certificate, a
// broker password, a bearer token. Every way fmt, slog, JSON and YAML
// have of printing it prints "[redacted]"; Reveal gives the value where
// it is needed (to sign, to log in).
type Secret struct{ v string }

// NewSecret wraps a value made in memory (a generated password).
func NewSecret(v string) Secret { return Secret{v: v} }

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

// Equal reports whether two secrets hold the same value.
func (s Secret) Equal(o Secret) bool { return s.v == o.v }

const redacted = "[redacted]"

// String implements fmt.Stringer.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer (the %#v verb).
func (s Secret) GoString() string { return redacted }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (JSON, YAML).
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MaxSize is the largest secret file accepted, in bytes.
const MaxSize = 4096

// Read returns the secret in path: a regular file of mode 0600 or 0640
// (or stricter), holding one non-empty line of at most MaxSize bytes.
// Surrounding whitespace, a trailing newline included, is dropped.
func Read(path string) (Secret, error) {
	v, err := read(path)
	return Secret{v: v}, err
}

func read(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if err := checkMode(path, st, "a secret file"); err != nil {
		return "", err
	}
	buf := make([]byte, MaxSize+1)
	n, err := f.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if n > MaxSize {
		return "", fmt.Errorf("%s is larger than %d bytes", path, MaxSize)
	}
	v := strings.TrimSpace(string(buf[:n]))
	switch {
	case v == "":
		return "", fmt.Errorf("%s is empty", path)
	case strings.ContainsAny(v, "\r\n"):
		return "", fmt.Errorf("%s must hold the secret on one line", path)
	}
	return v, nil
}

// CheckMode refuses a file that holds a secret but is not one as Read
// wants it: not a regular file, writable by its group or readable by
// others. what names the file's kind in the error ("a private key").
func CheckMode(path, what string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return checkMode(path, st, what)
}

func checkMode(path string, st os.FileInfo, what string) error {
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o027 != 0 {
		return fmt.Errorf("%s has mode %04o; %s must be 0600 or 0640 (chmod 600 %s)", path, perm, what, path)
	}
	return nil
}
