// Package configfile decodes the YAML files both binaries read (the
// agent's and the issuer's config, the policy, the API keys, the device
// credentials) in one strict way, and words every problem in one way:
//
//	limits.max_ttl (line 7): 48h0m0s is not between 1s and 24h0m0s
//	renew_befor (line 3): unknown key "renew_befor"
//
// that is the key's dotted path, its line, and the problem, never a Go
// type name. Callers put the file in front ("config /etc/x.yaml: …").
// Unknown keys, a key given twice and a second YAML document are errors.
package configfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrEmpty is returned (wrapped) by Decode for a file with no YAML
// document in it (empty, or only comments).
var ErrEmpty = errors.New("file is empty")

// Error is one problem at a place in a file. Key or Line may be unknown
// (empty, 0).
type Error struct {
	Key  string // dotted key path: limits.max_ttl, rules[2].match
	Line int    // 1-based
	Msg  string // the problem
	err  error  // what the problem was made from, for errors.Is and As
}

func (e *Error) Error() string {
	switch {
	case e.Key != "" && e.Line > 0:
		return fmt.Sprintf("%s (line %d): %s", e.Key, e.Line, e.Msg)
	case e.Key != "":
		return e.Key + ": " + e.Msg
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Unwrap returns the error the problem was made from, if any.
func (e *Error) Unwrap() error { return e.err }

// Keys is where each key of a decoded file stands, so that errors found
// after decoding (validation) can carry the key's line too.
type Keys struct {
	line   map[string]int     // key path → line of the key
	onLine map[int][]keyEntry // line → entries on it, outer first
}

type keyEntry struct {
	path  string
	name  string     // the last part of path ("" for a list item)
	value *yaml.Node // the key's value (or the list item)
}

// Line returns the line of the key at path, or 0 when the file does not
// have it.
func (k *Keys) Line(path string) int {
	if k == nil {
		return 0
	}
	return k.line[path]
}

// Decode decodes the one YAML document in src into v. Unknown keys, a
// key given twice, a second document and values of the wrong kind are
// errors; each is an *Error naming the key and line, several are joined
// (errors.Join). A file without a document returns an error wrapping
// ErrEmpty, and v is left as it was.
func Decode(src []byte, v any) (*Keys, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, syntaxError(err)
	}
	keys := index(&root)
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return keys, &Error{Msg: ErrEmpty.Error(), err: ErrEmpty}
	}
	if err != nil {
		return keys, keys.decodeError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		line := next.Line
		if err != nil {
			line = 0
		}
		return keys, &Error{Line: line, Msg: "a second YAML document (---) is not allowed; the file holds one"}
	}
	return keys, nil
}

// Parse reads r, decodes it into v (see Decode) and runs check, the
// validation of the decoded value, whose errors then carry the line of
// the key they start with (see Locate). check does not run when decoding
// fails.
func Parse(r io.Reader, v any, check func() error) (*Keys, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	keys, err := Decode(src, v)
	if err != nil {
		return keys, err
	}
	return keys, keys.Locate(check())
}

var yamlLineRE = regexp.MustCompile(`(?s)^(?:yaml: )?line (\d+): (.*)$`)

// syntaxError words an error of the YAML parser.
func syntaxError(err error) error {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "), err: err}
	}
	line, _ := strconv.Atoi(m[1])
	return &Error{Line: line, Msg: "not valid YAML: " + m[2], err: err}
}

var (
	unknownRE   = regexp.MustCompile(`(?s)^field (.*) not found in type `)
	unmarshalRE = regexp.MustCompile("(?s)^cannot unmarshal (!\\S*)(?: `(.*)`)? into (.+)$")
	dupRE       = regexp.MustCompile(`(?s)^mapping key "(.*)" already defined at line (\d+)$`)
)

// decodeError turns yaml.v3's decoding errors into Errors.
func (k *Keys) decodeError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		var pe *time.ParseError
		if errors.As(err, &pe) {
			key, line := k.byValue(pe.Value)
			return &Error{Key: key, Line: line, Msg: fmt.Sprintf("%q is not a time such as 2025-11-22T08:00:00Z", pe.Value), err: err}
		}
		return syntaxError(err)
	}
	out := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		e := &Error{Msg: msg, err: err}
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
		}
		var entries []keyEntry
		if k != nil {
			entries = k.onLine[e.Line]
		}
		pick := func(ok func(keyEntry) bool) {
			for i := len(entries) - 1; i >= 0; i-- {
				if ok(entries[i]) {
					e.Key = entries[i].path
					return
				}
			}
		}
		if len(entries) > 0 {
			e.Key = entries[len(entries)-1].path
		}
		switch m := matchAny(e.Msg); {
		case m.unknown != "":
			e.Msg = "unknown key " + strconv.Quote(m.unknown)
			pick(func(x keyEntry) bool { return x.name == m.unknown })
		case m.dupKey != "":
			e.Msg = fmt.Sprintf("%q is given twice (first on line %s)", m.dupKey, m.dupLine)
			pick(func(x keyEntry) bool { return x.name == m.dupKey })
		case m.into != "":
			got := describeTag(m.tag)
			switch m.tag {
			case "!!seq":
				pick(func(x keyEntry) bool { return x.value.Kind == yaml.SequenceNode })
			case "!!map":
				pick(func(x keyEntry) bool { return x.value.Kind == yaml.MappingNode })
			default:
				got = strconv.Quote(m.value)
				pick(func(x keyEntry) bool { return x.value.Kind == yaml.ScalarNode && x.value.Value == m.value })
			}
			e.Msg = fmt.Sprintf("%s is not %s", got, describeType(m.into))
		default:
			// Messages of our own UnmarshalYAML methods are kept.
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

type yamlMsg struct {
	unknown          string
	dupKey, dupLine  string
	tag, value, into string
}

func matchAny(msg string) yamlMsg {
	if m := unknownRE.FindStringSubmatch(msg); m != nil {
		return yamlMsg{unknown: m[1]}
	}
	if m := dupRE.FindStringSubmatch(msg); m != nil {
		return yamlMsg{dupKey: m[1], dupLine: m[2]}
	}
	if m := unmarshalRE.FindStringSubmatch(msg); m != nil {
		return yamlMsg{tag: m[1], value: m[2], into: m[3]}
	}
	return yamlMsg{}
}

// describeTag says what a YAML node of a tag is, for people.
func describeTag(tag string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	}
	return "a value tagged " + tag
}

// describeType says what a value of a Go type written in a config file
// looks like, without naming the Go type.
func describeType(t string) string {
	t = strings.TrimLeft(t, "*")
	switch {
	case t == "time.Duration":
		return "a duration such as 30s, 5m or 1h"
	case t == "time.Time":
		return "a time such as 2025-11-22T08:00:00Z"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	}
	// Structs and maps: the config files' other types are all mappings.
	return "a mapping of keys"
}

// byValue finds the key whose scalar value is v.
func (k *Keys) byValue(v string) (string, int) {
	if k == nil {
		return "", 0
	}
	best, bestLine := "", 0
	for line, es := range k.onLine {
		for _, e := range es {
			if e.value.Kind == yaml.ScalarNode && e.value.Value == v && (bestLine == 0 || line < bestLine) {
				best, bestLine = e.path, line
			}
		}
	}
	return best, bestLine
}

// index maps every key (and list item) to its line.
func index(root *yaml.Node) *Keys {
	k := &Keys{line: map[string]int{}, onLine: map[int][]keyEntry{}}
	var walk func(n *yaml.Node, path string)
	add := func(line int, e keyEntry) {
		k.onLine[line] = append(k.onLine[line], e)
	}
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, val := n.Content[i], n.Content[i+1]
				p := key.Value
				if path != "" {
					p = path + "." + key.Value
				}
				if _, seen := k.line[p]; !seen {
					k.line[p] = key.Line
				}
				e := keyEntry{path: p, name: key.Value, value: val}
				add(key.Line, e)
				if val.Line != key.Line {
					add(val.Line, e)
				}
				walk(val, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if _, seen := k.line[p]; !seen {
					k.line[p] = c.Line
				}
				add(c.Line, keyEntry{path: p, value: c})
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return k
}

// keyPrefixRE is a message that starts with a key path ("limits.max_ttl:
// …"), as validation errors do.
var keyPrefixRE = regexp.MustCompile(`^([A-Za-z0-9_][A-Za-z0-9_.\[\]-]*): `)

// Locate adds the line to validation errors that start with a key path
// the file has ("limits.max_ttl: 48h0m0s is not …" becomes
// "limits.max_ttl (line 7): 48h0m0s is not …"). Each error of a joined
// error is placed on its own; errors.Is and As still see the originals.
// nil stays nil.
func (k *Keys) Locate(err error) error {
	if err == nil || k == nil {
		return err
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = k.Locate(e)
		}
		return errors.Join(out...)
	}
	if _, ok := err.(*Error); ok {
		return err // placed already
	}
	msg := err.Error()
	m := keyPrefixRE.FindStringSubmatch(msg)
	if m == nil {
		return err
	}
	line := k.line[m[1]]
	if line == 0 {
		return err
	}
	return &Error{Key: m[1], Line: line, Msg: msg[len(m[0]):], err: err}
}

// LocateAll is Locate for each of errs.
func (k *Keys) LocateAll(errs []error) []error {
	out := make([]error, len(errs))
	for i, err := range errs {
		out[i] = k.Locate(err)
	}
	return out
}
