// Package devices keeps the device credentials file of the issuer's
// embedded broker: one entry per device with the SHA-256 hash of a
// generated secret. The secrets themselves are shown once, when made, and
// never stored. Generated secrets carry 192 bits of entropy, so a fast
// hash is enough (DESIGN.md: a slow hash would only make a fleet's boot
// storm cost minutes of CPU); hashes are compared in constant time.
package devices

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"agoratokens/atomicfile"
	"agoratokens/clock"
	"agoratokens/configfile"
	"agoratokens/wire"
)

// FormatVersion is the file's schema version.
const FormatVersion = 1

// secretBytes is the entropy of a generated secret (192 bits).
const secretBytes = 24

// hashPrefix marks the hash algorithm in the file.
const hashPrefix = "sha256:"

// ErrExists is returned by Add for a device that is already registered.
var ErrExists = errors.New("device is already registered")

// ErrNotFound is returned for a device that is not registered.
var ErrNotFound = errors.New("device is not registered")

// Device is one registered device.
type Device struct {
	// Name is the device id, which is also its MQTT user name.
	Name string
	// Created is when its current secret was made.
	Created time.Time
	hash    [sha256.Size]byte
}

// File is a credentials file in memory. It is not safe for concurrent
// mutation; Check may run concurrently as long as nothing mutates.
type File struct {
	// Clock stamps new entries with its wall time; nil means the real
	// clock.
	Clock clock.Clock

	devices []Device       // in file order
	index   map[string]int // name → position in devices
}

// fileYAML is the on-disk shape.
type fileYAML struct {
	Version int          `yaml:"version"`
	Devices []deviceYAML `yaml:"devices"`
}

type deviceYAML struct {
	Name    string    `yaml:"name"`
	Hash    string    `yaml:"hash"`
	Created time.Time `yaml:"created"`
}

// New returns an empty file.
func New() *File { return &File{index: map[string]int{}} }

// Load reads a credentials file. A missing file is an empty one; a file
// that cannot be parsed is an error naming the problem.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return New(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read device credentials: %w", err)
	}
	f, err := Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("device credentials %s: %w", path, err)
	}
	return f, nil
}

// Parse reads a credentials file's content. Unknown keys are errors;
// empty content is a file without devices.
func Parse(r io.Reader) (*File, error) {
	var y fileYAML
	var f *File
	_, err := configfile.Parse(r, &y, func() (err error) {
		f, err = y.check()
		return err
	})
	switch {
	case errors.Is(err, configfile.ErrEmpty):
		return New(), nil
	case err != nil:
		return nil, err
	}
	return f, nil
}

// check validates the decoded file; its errors start with their key.
func (y *fileYAML) check() (*File, error) {
	if y.Version != FormatVersion && !(y.Version == 0 && len(y.Devices) == 0) {
		return nil, fmt.Errorf("version: %d is not supported (want %d)", y.Version, FormatVersion)
	}
	f := New()
	for i, d := range y.Devices {
		if err := wire.ValidateDeviceID(d.Name); err != nil {
			return nil, fmt.Errorf("devices[%d].name: %w", i, err)
		}
		if _, dup := f.index[d.Name]; dup {
			return nil, fmt.Errorf("devices[%d].name: %q is listed twice", i, d.Name)
		}
		h, err := parseHash(d.Hash)
		if err != nil {
			return nil, fmt.Errorf("devices[%d].hash: device %q: %w", i, d.Name, err)
		}
		f.index[d.Name] = len(f.devices)
		f.devices = append(f.devices, Device{Name: d.Name, Created: d.Created, hash: h})
	}
	return f, nil
}

func parseHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	hexPart, ok := strings.CutPrefix(s, hashPrefix)
	if !ok {
		return h, fmt.Errorf("must start with %q", hashPrefix)
	}
	b, err := hex.DecodeString(hexPart)
	if err != nil || len(b) != sha256.Size {
		return h, fmt.Errorf("must be %q and %d hex digits", hashPrefix, 2*sha256.Size)
	}
	copy(h[:], b)
	return h, nil
}

// Len is the number of registered devices.
func (f *File) Len() int { return len(f.devices) }

// Devices lists the registered devices in file order.
func (f *File) Devices() []Device { return slices.Clone(f.devices) }

// Has reports whether name is registered.
func (f *File) Has(name string) bool {
	_, ok := f.index[name]
	return ok
}

// Add registers a new device and returns its secret, which is not kept
// anywhere: show it once. A device that exists is refused with ErrExists
// (use Rotate to replace its secret).
func (f *File) Add(name string) (string, error) {
	if err := wire.ValidateDeviceID(name); err != nil {
		return "", err
	}
	if f.Has(name) {
		return "", fmt.Errorf("add %q: %w", name, ErrExists)
	}
	secret, err := NewSecret()
	if err != nil {
		return "", err
	}
	f.put(name, secret)
	return secret, nil
}

// AddSecret registers a device with a secret the caller made (the fleet
// simulator derives its devices' secrets). The secret must be at least
// 22 characters (about 128 bits in base64).
func (f *File) AddSecret(name, secret string) error {
	if err := wire.ValidateDeviceID(name); err != nil {
		return err
	}
	if len(secret) < 22 {
		return fmt.Errorf("add %q: secret is shorter than 22 characters", name)
	}
	if f.Has(name) {
		return fmt.Errorf("add %q: %w", name, ErrExists)
	}
	f.put(name, secret)
	return nil
}

// Rotate gives a registered device a new secret and returns it; the old
// one stops working once the file is saved and reloaded.
func (f *File) Rotate(name string) (string, error) {
	if !f.Has(name) {
		return "", fmt.Errorf("rotate %q: %w", name, ErrNotFound)
	}
	secret, err := NewSecret()
	if err != nil {
		return "", err
	}
	f.put(name, secret)
	return secret, nil
}

// Remove unregisters a device.
func (f *File) Remove(name string) error {
	i, ok := f.index[name]
	if !ok {
		return fmt.Errorf("remove %q: %w", name, ErrNotFound)
	}
	f.devices = slices.Delete(f.devices, i, i+1)
	delete(f.index, name)
	for j := i; j < len(f.devices); j++ {
		f.index[f.devices[j].Name] = j
	}
	return nil
}

// put stores (or replaces) name's hash.
func (f *File) put(name, secret string) {
	clk := f.Clock
	if clk == nil {
		clk = clock.Real()
	}
	d := Device{Name: name, Created: clk.Wall().UTC().Truncate(time.Second), hash: sha256.Sum256([]byte(secret))}
	if i, ok := f.index[name]; ok {
		f.devices[i] = d
		return
	}
	f.index[name] = len(f.devices)
	f.devices = append(f.devices, d)
}

// Check reports whether secret is name's secret. The hashes are compared
// in constant time, and an unknown name costs the same hash.
func (f *File) Check(name, secret string) bool {
	got := sha256.Sum256([]byte(secret))
	i, ok := f.index[name]
	want := [sha256.Size]byte{}
	if ok {
		want = f.devices[i].hash
	}
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1 && ok
}

// WriteTo writes the file's content.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	y := fileYAML{Version: FormatVersion, Devices: make([]deviceYAML, 0, len(f.devices))}
	for _, d := range f.devices {
		y.Devices = append(y.Devices, deviceYAML{Name: d.Name, Hash: hashPrefix + hex.EncodeToString(d.hash[:]), Created: d.Created})
	}
	var b bytes.Buffer
	b.WriteString("# Device credentials of agora-token-issuer's embedded broker.\n" +
		"# SHA-256 hashes of generated secrets only; manage with\n" +
		"# `agora-token-issuer device add|list|remove`.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(y); err != nil {
		return 0, err
	}
	if err := enc.Close(); err != nil {
		return 0, err
	}
	return b.WriteTo(w)
}

// Save writes the file atomically and durably (see package atomicfile).
// A new file is 0600; an existing one keeps its owner and group, and its
// mode up to 0640, so that the issuer's service user can still read it
// after an operator, as root, adds a device.
func (f *File) Save(path string) error {
	var b bytes.Buffer
	if _, err := f.WriteTo(&b); err != nil {
		return fmt.Errorf("save device credentials: %w", err)
	}
	if err := atomicfile.WritePrivate(path, b.Bytes()); err != nil {
		return fmt.Errorf("save device credentials: %w", err)
	}
	return nil
}

// NewSecret returns a fresh random secret: 192 bits, URL-safe base64.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
