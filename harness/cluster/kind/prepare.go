package kind

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/fastpath-bench/fastpath/harness/images"
	"github.com/fastpath-bench/fastpath/harness/kindnode"
)

// RunOptions are what a benchmark or conformance run on kind needs;
// zero values mean defaults.
type RunOptions struct {
	// NodeImage is the node image; empty: the offline build's tag (make
	// kind-node-image).
	NodeImage string
	// AgentImage is the agent image; empty: built from ImageBinDir.
	AgentImage string
	// ImageBinDir holds the static binaries of the agent image (make
	// image); empty: bin/image.
	ImageBinDir string
	// Retain keeps the cluster at the end (debugging; fastpath clean
	// deletes it).
	Retain bool
}

// Prepare checks, before anything is created, what a kind run needs (the
// engine, the capability wrapper, the node image), fills in the default
// node image, and builds the agent image when missing. Each failure names
// its fix.
func (o *RunOptions) Prepare(ctx context.Context, logf func(string, ...any)) error {
	var err error
	if o.NodeImage == "" {
		if o.NodeImage, err = kindnode.Tag(ctx, kindnode.Options{}); err != nil {
			return err
		}
	}
	if err := Preflight(ctx, o.NodeImage); err != nil {
		return fmt.Errorf("kind provider: %w", err)
	}
	if o.AgentImage != "" {
		if !images.Exists(ctx, o.AgentImage) {
			return fmt.Errorf("kind provider: agent image %s is not in Docker's image store (make image)", o.AgentImage)
		}
		return nil
	}
	dir := o.ImageBinDir
	if dir == "" {
		dir = filepath.Join("bin", "image")
	}
	if o.AgentImage, err = images.Build(ctx, dir, logf); err != nil {
		return fmt.Errorf("kind provider: agent image: %w", err)
	}
	return nil
}
