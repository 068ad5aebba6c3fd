package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDevPackagesLinked holds the layout's promise: the agent binary
// links no test support (internal/testenv), no dev program (internal/dev),
// no end-to-end test (test/) and not the testing package.
func TestNoDevPackagesLinked(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("needs the go command: %v", err)
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const mod = "github.com/efs-health-agent/efs-health-agent/"
	for _, p := range strings.Fields(string(out)) {
		switch {
		case p == "testing", strings.HasPrefix(p, "testing/"),
			strings.HasPrefix(p, mod+"internal/testenv/"),
			strings.HasPrefix(p, mod+"internal/dev/"),
			strings.HasPrefix(p, mod+"test/"):
			t.Errorf("the agent binary links %s", p)
		}
	}
}
