// Package secretfile reads a secret (App Certificate, broker password,
// API key) from a file, as both binaries keep them: never on a command
// line, never in the config itself. It refuses a file others may read,
// as ssh does for private keys, and its errors name the file but never
// quote what is in it.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxSize is the largest secret file accepted, in bytes.
const MaxSize = 4096

// Read returns the secret in path: a regular file of mode 0600 or 0640
// (or stricter), holding one non-empty line of at most MaxSize bytes.
// Surrounding whitespace, a trailing newline included, is dropped.
func Read(path string) (string, error) {
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
		return "", fmt.Errorf("%s has mode %04o; a secret file must be 0600 or 0640 (chmod 600 %s)", path, perm, path)
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
