// Command fastpath-cni is the fastpath CNI plugin binary, installed in the
// runtime's CNI bin directory and named by the agent's
// 05-fastpath.conflist. All the logic is in datapath/cni.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/fastpath-bench/fastpath/datapath/cni"
)

func main() {
	p := &cni.Plugin{}
	skel.PluginMainFuncs(skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check}, cni.SupportedVersions, cni.About)
}
