package fleetsim

import (
	"bufio"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"agoratokens/atomicfile"
	"agoratokens/issuer/devices"
)

// Simulated devices' secrets derive from a seed kept in a file, so that
// one run can register a fleet and a later run (or several) can log it
// in, and so that no secret is ever passed on a command line.

// seedBytes is the seed's size.
const seedBytes = 32

// LoadOrCreateSeed reads the seed file, or creates it (mode 0600) with a
// random seed when it does not exist.
func LoadOrCreateSeed(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		seed, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(seed) != seedBytes {
			return nil, fmt.Errorf("seed file %s: want %d base64-encoded bytes", path, seedBytes)
		}
		return seed, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("seed file: %w", err)
	}
	seed := make([]byte, seedBytes)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("seed file: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(seed) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("seed file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("seed file: %w", err)
	}
	return seed, nil
}

// Secret is a simulated device's secret: 192 bits derived from the seed
// and the device id.
func Secret(seed []byte, device string) string {
	m := hmac.New(sha256.New, seed)
	m.Write([]byte(device))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}

// DeviceName is the id of simulated device i (0-based) with a prefix.
func DeviceName(prefix string, i int) string { return fmt.Sprintf("%s%05d", prefix, i) }

// Format is a credentials file format.
type Format string

// Formats the simulator can register devices in.
const (
	// FormatIssuer is the embedded broker's credentials file.
	FormatIssuer Format = "issuer"
	// FormatMosquitto is a mosquitto password_file.
	FormatMosquitto Format = "mosquitto"
)

// Register writes the credentials of names into path. For FormatIssuer
// the devices are added to (or replaced in) the file; for
// FormatMosquitto lines of these users are replaced and other users'
// lines (such as the issuer's) are kept.
func Register(path string, format Format, seed []byte, names []string) error {
	switch format {
	case FormatIssuer:
		f, err := devices.Load(path)
		if err != nil {
			return err
		}
		for _, n := range names {
			if f.Has(n) {
				if err := f.Remove(n); err != nil {
					return err
				}
			}
			if err := f.AddSecret(n, Secret(seed, n)); err != nil {
				return err
			}
		}
		return f.Save(path)
	case FormatMosquitto:
		return registerMosquitto(path, seed, names)
	}
	return fmt.Errorf("credentials format %q is not issuer or mosquitto", format)
}

// registerMosquitto writes a mosquitto password file. Hashes use
// mosquitto 2's PBKDF2-SHA512 format, "$7$iterations$salt$hash", as
// mosquitto_passwd makes them; one process per user would take minutes
// for a large fleet.
func registerMosquitto(path string, seed []byte, names []string) error {
	ours := make(map[string]bool, len(names))
	for _, n := range names {
		ours[n] = true
	}
	var b strings.Builder
	if old, err := os.ReadFile(path); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(old)))
		for sc.Scan() {
			line := sc.Text()
			user, _, _ := strings.Cut(line, ":")
			if line != "" && !ours[user] {
				b.WriteString(line + "\n")
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("password file: %w", err)
	}
	for _, n := range names {
		h, err := MosquittoHash(Secret(seed, n))
		if err != nil {
			return err
		}
		b.WriteString(n + ":" + h + "\n")
	}
	// mosquitto reads the file as its own user: a rewrite keeps the
	// file's owner, group and mode (root:mosquitto 0640, typically).
	if err := atomicfile.WritePrivate(path, []byte(b.String())); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	return nil
}

// mosquittoIterations is mosquitto_passwd's default PBKDF2 iteration
// count.
const mosquittoIterations = 101

// MosquittoHash hashes a password as mosquitto_passwd does by default.
func MosquittoHash(password string) (string, error) {
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return mosquittoHashSalt(password, salt)
}

func mosquittoHashSalt(password string, salt []byte) (string, error) {
	key, err := pbkdf2.Key(sha512.New, password, salt, mosquittoIterations, sha512.Size)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$7$%d$%s$%s", mosquittoIterations,
		base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(key)), nil
}
