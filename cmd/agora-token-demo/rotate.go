package main

import (
	"bytes"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"

	"agoratokens/atomicfile"
)

// addCertificate appends {id, file} to the issuer config's certificates
// and makes it the active one, keeping the rest of the file (and its
// comments) as they are.
func addCertificate(cfgPath, id, file string) error {
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("parse %s: %w", cfgPath, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("%s is not a YAML mapping", cfgPath)
	}
	root := doc.Content[0]
	certs := mapValue(root, "certificates")
	if certs == nil || certs.Kind != yaml.SequenceNode {
		return fmt.Errorf("%s has no certificates list", cfgPath)
	}
	entry := &yaml.Node{Kind: yaml.MappingNode}
	entry.Content = append(entry.Content, scalar("id"), scalar(id), scalar("file"), scalar(file))
	certs.Content = append(certs.Content, entry)
	if active := mapValue(root, "active_certificate"); active != nil {
		active.Value = id
	} else {
		root.Content = append(root.Content, scalar("active_certificate"), scalar(id))
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return atomicfile.Write(cfgPath, out.Bytes(), 0o600)
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }
