package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// SplitByCluster sorts YAML documents by ClusterAnnotation: a document
// with it goes to that cluster, one without to every cluster.
func SplitByCluster(data []byte, clusters []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	known := map[string]bool{}
	for _, n := range clusters {
		known[n] = true
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name        string            `json:"name"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		add := func(name string) {
			b := out[name]
			if len(b) > 0 {
				b = append(b, []byte("---\n")...)
			}
			out[name] = append(b, doc...)
		}
		target, ok := meta.Metadata.Annotations[ClusterAnnotation]
		switch {
		case !ok:
			for _, n := range clusters {
				add(n)
			}
		case known[target]:
			add(target)
		default:
			return nil, fmt.Errorf("document %d (%s %s): metadata.annotations[%s]: no cluster %q in the mesh", i, meta.Kind, meta.Metadata.Name, ClusterAnnotation, target)
		}
	}
	return out, nil
}
