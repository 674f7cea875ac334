// kubectl for ukko's test rig, built from the k8s.io/kubectl library at the
// release pinned in go.mod (scripts/install-kubectl.sh builds and caches it),
// for machines whose package sources have no kubectl. Not part of the product.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
