package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"

	"agoratokens/issuer"
)

// configDoc edits an issuer config file in place for the certificate and
// rotate commands. yaml.v3 finds the nodes (their lines and columns);
// the edit itself is textual, on those lines only, because re-encoding
// the node tree moves comments and blank lines and reformats flow
// mappings. Every edited file is loaded as the issuer would load it
// before it replaces the original.
type configDoc struct {
	path  string
	mode  os.FileMode
	owner os.FileInfo // whose the file is: an edit run as root keeps it
	lines []string
}

func readConfigDoc(path string) (*configDoc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if strings.Contains(string(b), "\r") {
		return nil, fmt.Errorf("config %s has CR line ends; convert it to LF to edit it with this command", path)
	}
	return &configDoc{path: path, mode: st.Mode().Perm(), owner: st, lines: strings.Split(string(b), "\n")}, nil
}

// parse returns the document's root mapping.
func (d *configDoc) parse() (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(strings.Join(d.lines, "\n")), &doc); err != nil {
		return nil, fmt.Errorf("config %s: %w", d.path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config %s: not a YAML mapping", d.path)
	}
	return doc.Content[0], nil
}

// value returns the value node of a top-level key, nil when absent.
func (d *configDoc) value(key string) (*yaml.Node, error) {
	r, err := d.parse()
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(r.Content); i += 2 {
		if r.Content[i].Value == key {
			return r.Content[i+1], nil
		}
	}
	return nil, nil
}

// lastLine is the last line (1-based) of a node's subtree.
func lastLine(n *yaml.Node) int {
	l := n.Line
	for _, c := range n.Content {
		if cl := lastLine(c); cl > l {
			l = cl
		}
	}
	return l
}

// setScalar sets a top-level key to value (a plain scalar: ids are
// [A-Za-z0-9._-]), adding the key at the end when absent.
func (d *configDoc) setScalar(key, value string) error {
	v, err := d.value(key)
	if err != nil {
		return err
	}
	if v == nil {
		if n := len(d.lines); n > 0 && d.lines[n-1] == "" {
			d.lines = append(d.lines[:n-1], key+": "+value, "")
		} else {
			d.lines = append(d.lines, key+": "+value)
		}
		return nil
	}
	if v.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s: not a plain value in the config", key)
	}
	raw := len(v.Value)
	switch v.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		raw += 2
	case 0, yaml.TaggedStyle:
	default:
		return fmt.Errorf("%s: write it as a plain value to edit it with this command", key)
	}
	line := d.lines[v.Line-1]
	start := v.Column - 1
	if start+raw > len(line) {
		return fmt.Errorf("%s: cannot find its value on line %d", key, v.Line)
	}
	d.lines[v.Line-1] = line[:start] + value + line[start+raw:]
	return nil
}

// certificates returns the certificates sequence node.
func (d *configDoc) certificates() (*yaml.Node, error) {
	v, err := d.value("certificates")
	if err != nil {
		return nil, err
	}
	if v == nil || v.Kind != yaml.SequenceNode {
		return nil, errors.New("certificates: not a list in the config")
	}
	return v, nil
}

// flowEntry renders one certificate entry.
func flowEntry(id, file string) string {
	return fmt.Sprintf("{id: %s, file: %s}", id, yamlString(file))
}

// yamlString quotes s when YAML would not read it back as the same
// plain string.
func yamlString(s string) string {
	var back string
	if err := yaml.Unmarshal([]byte("v: "+s), &struct {
		V *string `yaml:"v"`
	}{&back}); err == nil && back == s && !strings.ContainsAny(s, ",[]{}#") {
		return s
	}
	return fmt.Sprintf("%q", s)
}

// addCertificate appends {id, file} to certificates.
func (d *configDoc) addCertificate(id, file string) error {
	seq, err := d.certificates()
	if err != nil {
		return err
	}
	if seq.Style&yaml.FlowStyle != 0 || len(seq.Content) == 0 {
		return d.rewriteFlow(seq, append(entries(seq), [2]string{id, file}))
	}
	last := seq.Content[len(seq.Content)-1]
	at := lastLine(last)
	// The dash of a block item is two columns before the item.
	indent := strings.Repeat(" ", max(last.Column-3, 0))
	line := indent + "- " + flowEntry(id, file)
	if last.Kind == yaml.MappingNode && last.Style&yaml.FlowStyle == 0 {
		line = indent + "- id: " + id + "\n" + indent + "  file: " + yamlString(file)
	}
	d.lines = append(d.lines[:at], append(strings.Split(line, "\n"), d.lines[at:]...)...)
	return nil
}

// entries returns a sequence's {id, file} pairs.
func entries(seq *yaml.Node) [][2]string {
	var out [][2]string
	for _, item := range seq.Content {
		var e [2]string
		for j := 0; j+1 < len(item.Content); j += 2 {
			switch item.Content[j].Value {
			case "id":
				e[0] = item.Content[j+1].Value
			case "file":
				e[1] = item.Content[j+1].Value
			}
		}
		out = append(out, e)
	}
	return out
}

// rewriteFlow replaces a flow (or empty) sequence with the given entries
// in flow style, on the lines it took.
func (d *configDoc) rewriteFlow(seq *yaml.Node, es [][2]string) error {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = flowEntry(e[0], e[1])
	}
	text := "[" + strings.Join(parts, ", ") + "]"
	first, end := seq.Line-1, lastLine(seq)-1
	start := seq.Column - 1
	// Find the closing bracket of the sequence on its last line.
	tail := d.lines[end]
	closeAt := strings.Index(tail[func() int {
		if end == first {
			return start
		}
		return 0
	}():], "]")
	if closeAt < 0 {
		return errors.New("certificates: cannot find the end of the list; write it one entry a line to edit it with this command")
	}
	if end == first {
		closeAt += start
	}
	head := d.lines[first][:start]
	rest := tail[closeAt+1:]
	d.lines = append(d.lines[:first], append([]string{head + text + rest}, d.lines[end+1:]...)...)
	return nil
}

// removeCertificate drops the entry with id from certificates.
func (d *configDoc) removeCertificate(id string) error {
	seq, err := d.certificates()
	if err != nil {
		return err
	}
	es := entries(seq)
	for i, e := range es {
		if e[0] != id {
			continue
		}
		if seq.Style&yaml.FlowStyle != 0 {
			return d.rewriteFlow(seq, append(es[:i:i], es[i+1:]...))
		}
		item := seq.Content[i]
		from, to := item.Line-1, lastLine(item)
		if from > 0 && strings.TrimSpace(d.lines[from]) != "" && !strings.HasPrefix(strings.TrimSpace(d.lines[from]), "-") {
			return errors.New("certificates: cannot find the entry's lines; edit the config by hand")
		}
		d.lines = append(d.lines[:from], d.lines[to:]...)
		return nil
	}
	return fmt.Errorf("certificates: no entry with id %q", id)
}

// save checks that the edited config loads, then replaces the file
// atomically, keeping its mode.
func (d *configDoc) save() error {
	dir := filepath.Dir(d.path)
	tmp, err := os.CreateTemp(dir, ".issuer-config-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(strings.Join(d.lines, "\n")); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(d.mode); err != nil {
		tmp.Close()
		return err
	}
	if err := chownLike(tmp.Name(), d.owner); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if _, err := issuer.LoadConfig(tmp.Name()); err != nil {
		return fmt.Errorf("the edited config would not load, left unchanged: %w", err)
	}
	return os.Rename(tmp.Name(), d.path)
}

// chownLike gives path the owner and group of like, when run as root
// (an operator's sudo): the issuer runs as its own user and must still
// read what the command wrote.
func chownLike(path string, like os.FileInfo) error {
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return nil
	}
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}
