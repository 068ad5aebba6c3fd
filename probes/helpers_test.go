package probes_test

import (
	"os"
	"path/filepath"

	"github.com/efs-health-agent/efs-health-agent/probes"
)

// leftBehind lists what a check may not leave in the mount root at root:
// every entry of the root but the probe directory, and every entry of
// the probe directory (which stays, empty, for the next check).
func leftBehind(root string) []string {
	var left []string
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if e.Name() == probes.DirName && e.IsDir() {
			in, _ := os.ReadDir(filepath.Join(root, probes.DirName))
			for _, f := range in {
				left = append(left, filepath.Join(probes.DirName, f.Name()))
			}
			continue
		}
		left = append(left, e.Name())
	}
	return left
}
