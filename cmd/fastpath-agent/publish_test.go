package main

import "testing"

func TestPublishes(t *testing.T) {
	for _, c := range []struct {
		publish           bool
		publishNode, node string
		want              bool
	}{
		{false, "", "w1", false},
		{true, "", "w1", true},
		{false, "w1", "w1", true},
		{false, "w1", "w2", false},
		{false, "w1", "", false},
		{true, "w1", "w2", true},
	} {
		if got := publishes(c.publish, c.publishNode, c.node); got != c.want {
			t.Errorf("publishes(%v, %q, %q) = %v, want %v", c.publish, c.publishNode, c.node, got, c.want)
		}
	}
	// The flag is registered and parsed.
	root := newRoot()
	if err := root.Flags().Parse([]string{"--clustermesh-publish-node=x"}); err != nil {
		t.Fatal(err)
	}
}
