package issuer

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// nameYAMLError rewrites yaml.v3's "line N: …" errors to name the key at
// that line ("limits.max_ttl (line 7): …"), so that every config error
// says which key is wrong.
func nameYAMLError(src []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(src, &root)
	keys := map[int][]string{}
	walkKeys(&root, "", keys)
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		m := yamlLineRE.FindStringSubmatch(e)
		if m == nil {
			msgs = append(msgs, e)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		paths := keys[line]
		if f, _, ok := strings.Cut(strings.TrimPrefix(msg, "field "), " not found in type"); ok && strings.HasPrefix(msg, "field ") {
			msg = "unknown key " + strconv.Quote(f)
			// Several keys may share a line ({a: 1, b: 2}): pick the one.
			for _, p := range paths {
				if p == f || strings.HasSuffix(p, "."+f) {
					paths = []string{p}
				}
			}
		}
		if len(paths) > 0 {
			msgs = append(msgs, fmt.Sprintf("%s (line %d): %s", paths[len(paths)-1], line, msg))
		} else {
			msgs = append(msgs, fmt.Sprintf("line %d: %s", line, msg))
		}
	}
	return errors.New(strings.Join(msgs, "; "))
}

// walkKeys maps each line that holds a key or a value to the dotted
// paths of the keys on it, outer keys first.
func walkKeys(n *yaml.Node, path string, keys map[int][]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walkKeys(c, path, keys)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			keys[k.Line] = append(keys[k.Line], p)
			if v.Line != k.Line {
				keys[v.Line] = append(keys[v.Line], p)
			}
			walkKeys(v, p, keys)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			keys[c.Line] = append(keys[c.Line], p)
			walkKeys(c, p, keys)
		}
	}
}
