// Package natsauth writes the nats-server authorization fragment of a
// NATS deployment (nats-auth.conf, included by every node's config): one
// user per device, allowed only its own subjects and only over MQTT, and
// the issuer's user. It also maps MQTT topics to the NATS subjects
// nats-server's MQTT listener gives them.
//
// nats-server takes bcrypt hashes. The device secrets are generated,
// 128 bits or more, so a slow hash adds nothing against guessing; it
// only costs CPU at every login. The hashes use bcrypt's lowest cost
// (Cost), which keeps a 10,000-device login storm to seconds of CPU
// across the cluster (see docs/broker.md).
package natsauth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"agoratokens/atomicfile"
	"agoratokens/wire"
)

// Cost is the bcrypt cost of the hashes written: bcrypt's minimum.
const Cost = bcrypt.MinCost

// Hash is the bcrypt hash of a secret, as nats-server's config takes it.
func Hash(secret string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(secret), Cost)
	if err != nil {
		return "", fmt.Errorf("bcrypt: %w", err)
	}
	return string(h), nil
}

// Subject maps an MQTT topic (or filter) to the NATS subject nats-server's
// MQTT listener gives it: "/" separates tokens, a "." inside a level
// (device ids may hold one) becomes "//", and + and # become * and >.
func Subject(topic string) string {
	var b strings.Builder
	for i := 0; i < len(topic); i++ {
		switch c := topic[i]; c {
		case '/':
			b.WriteByte('.')
		case '.':
			b.WriteString("//")
		case '+':
			b.WriteByte('*')
		case '#':
			b.WriteByte('>')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Topic is Subject's inverse for a subject without wildcards.
func Topic(subject string) string {
	var b strings.Builder
	for i := 0; i < len(subject); i++ {
		switch c := subject[i]; {
		case c == '/' && i+1 < len(subject) && subject[i+1] == '/':
			b.WriteByte('.')
			i++
		case c == '.':
			b.WriteByte('/')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ValidateDevice checks that a device id can be a NATS user with MQTT
// topics of its own: a valid device id without a ".", which nats-server
// 2.9's MQTT listener refuses in topics ("characters ' ' and '.' not
// supported for MQTT topics").
func ValidateDevice(name string) error {
	if err := wire.ValidateDeviceID(name); err != nil {
		return err
	}
	if strings.Contains(name, ".") {
		return fmt.Errorf("device id %q: a NATS cluster's MQTT listener (nats-server 2.9) refuses a \".\" in topics; use - or _ instead", name)
	}
	return nil
}

// User is a nats-server user: its name and bcrypt hash.
type User struct {
	Name, Hash string
}

// Render writes the authorization fragment: the issuer (nil: none, as
// with a credentials file) and the devices, each device allowed to
// publish its request and status, to subscribe to its token topic, and
// what nats-server's MQTT implementation subscribes to on its behalf for
// a QoS 1 subscription ($MQTT.sub.<id>, a JetStream delivery subject
// that an MQTT client cannot name itself), and only over MQTT: a device
// login on the NATS port is refused. The issuer's user also logs in
// over MQTT, for the fleet state NATS keeps as MQTT retained messages
// (the replicas' statuses, the campaign, the snapshot markers).
func Render(w io.Writer, topics wire.Topics, issuer *User, devices []User) error {
	var b bytes.Buffer
	b.WriteString("# nats-server users, written by agora-token-issuer (device add|rotate|remove);\n")
	b.WriteString("# do not edit. Include it in every node's config; apply a change with\n")
	b.WriteString("# `nats-server --signal reload` on each node.\n")
	b.WriteString("authorization {\n  users = [\n")
	if issuer != nil {
		fleet := []string{Subject(topics.AllReplicas()), Subject(topics.Campaign()), Subject(topics.Marker("*"))}
		fmt.Fprintf(&b, "    {user: %q, password: %q, allowed_connection_types: [\"STANDARD\", \"MQTT\"], permissions: {\n", issuer.Name, issuer.Hash)
		fmt.Fprintf(&b, "      publish: {allow: %s}\n", quoteList(append([]string{Subject(topics.Token("*")), Subject(topics.IssuerStatus())}, fleet...)))
		fmt.Fprintf(&b, "      subscribe: {allow: %s}\n", quoteList(append([]string{Subject(topics.AllReqs()), Subject(topics.Status("*")), Subject(topics.IssuerStatus())}, append(fleet, "$MQTT.sub.>")...)))
		b.WriteString("    }}\n")
	}
	for _, d := range devices {
		if err := ValidateDevice(d.Name); err != nil {
			return err
		}
		if !strings.HasPrefix(d.Hash, "$2") {
			return fmt.Errorf("device %s: the hash is not bcrypt", d.Name)
		}
		fmt.Fprintf(&b, "    {user: %q, password: %q, allowed_connection_types: [\"MQTT\"], permissions: {", d.Name, d.Hash)
		fmt.Fprintf(&b, "publish: {allow: [%q, %q]}, ", Subject(topics.Req(d.Name)), Subject(topics.Status(d.Name)))
		fmt.Fprintf(&b, "subscribe: {allow: [%q, \"$MQTT.sub.>\"]}}}\n", Subject(topics.Token(d.Name)))
	}
	b.WriteString("  ]\n}\n")
	_, err := w.Write(b.Bytes())
	return err
}

// quoteList is a nats-server config list of quoted strings.
func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, it := range items {
		q[i] = strconv.Quote(it)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Hashes are the devices' bcrypt hashes, kept beside the fragment
// (HashesFile): the device registry holds SHA-256 hashes, which
// nats-server does not take, and a secret is known only when it is
// made, so each add or rotate records its bcrypt hash here.
type Hashes map[string]string

// HashesFile is where the hashes of the fragment at authFile are kept.
func HashesFile(authFile string) string {
	return strings.TrimSuffix(authFile, ".conf") + ".hashes.yaml"
}

type hashesYAML struct {
	Version int               `yaml:"version"`
	Devices map[string]string `yaml:"devices"`
}

// LoadHashes reads a hashes file; a missing one is empty.
func LoadHashes(path string) (Hashes, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Hashes{}, nil
	}
	if err != nil {
		return nil, err
	}
	var y hashesYAML
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&y); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if y.Version != 1 {
		return nil, fmt.Errorf("%s: version %d is not 1", path, y.Version)
	}
	h := Hashes{}
	for name, hash := range y.Devices {
		if err := wire.ValidateDeviceID(name); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if !strings.HasPrefix(hash, "$2") {
			return nil, fmt.Errorf("%s: device %s: the hash is not bcrypt", path, name)
		}
		h[name] = hash
	}
	return h, nil
}

// Save writes the hashes (mode 0600).
func (h Hashes) Save(path string) error {
	b, err := yaml.Marshal(hashesYAML{Version: 1, Devices: h})
	if err != nil {
		return err
	}
	return atomicfile.WritePrivate(path, b)
}

// Write regenerates the fragment at authFile for the devices named
// (the registry's, in its order) from their hashes; a device without a
// hash (registered before the NATS setup) is left out and returned, so
// the caller can say it needs a rotate.
func Write(authFile string, topics wire.Topics, issuer *User, names []string, h Hashes) (missing []string, err error) {
	var users []User
	for _, n := range names {
		if hash, ok := h[n]; ok {
			users = append(users, User{Name: n, Hash: hash})
		} else {
			missing = append(missing, n)
		}
	}
	slices.SortFunc(users, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	if err := Render(&b, topics, issuer, users); err != nil {
		return nil, err
	}
	// nats-server reads it as whatever user it runs as: world-readable
	// is not needed, group-readable is (0640, as the password files).
	return missing, atomicfile.Write(authFile, b.Bytes(), 0o640)
}
