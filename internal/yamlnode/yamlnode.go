// Package yamlnode reads positions out of a parsed YAML document, for
// errors that name "file:line": the policy and baseline loaders decode
// strictly into types, then ask the node tree where each item stood.
package yamlnode

import "gopkg.in/yaml.v3"

// Sequence returns the items of the sequence under key in the document's
// top-level mapping (an alias is followed), or nil when there is none.
func Sequence(doc *yaml.Node, key string) []*yaml.Node {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != key {
			continue
		}
		seq := n.Content[i+1]
		if seq.Kind == yaml.AliasNode && seq.Alias != nil {
			seq = seq.Alias
		}
		if seq.Kind != yaml.SequenceNode {
			return nil
		}
		return seq.Content
	}
	return nil
}
