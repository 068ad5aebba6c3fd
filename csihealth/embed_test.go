package csihealth_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEmbedderDependencies holds the module layout's promise to a CSI driver
// that embeds the health check: a module importing agent, probes, httpapi
// and csihealth gets, after go mod tidy, no Kubernetes, controller-runtime,
// kustomize or Prometheus Operator module in its build list. Go's version
// selection would otherwise lift the driver's own pinned Kubernetes
// libraries to whatever the root go.mod requires; the deploy and collector
// tests that need them are modules of their own.
func TestEmbedderDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("needs the go command: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const mod = "github.com/efs-health-agent/efs-health-agent"
	write("go.mod", "module example.com/csidriver\n\ngo 1.26.8\n\n"+
		"require "+mod+" v0.0.0\n\nreplace "+mod+" => "+root+"\n")
	write("main.go", `package main

import (
	_ "`+mod+`/agent"
	_ "`+mod+`/csihealth"
	_ "`+mod+`/httpapi"
	_ "`+mod+`/probes"
)

func main() {}
`)
	// The checkout's go.sum covers every module the scratch module can
	// need, so go mod tidy verifies them without the checksum database.
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write("go.sum", string(sum))

	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		// Module mode on the scratch module alone: no workspace of the
		// checkout, no flags from the caller's environment.
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	goCmd("mod", "tidy")
	all := goCmd("list", "-m", "all")
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(all), "\n") {
		n++
		path := strings.Fields(line)[0]
		if strings.HasPrefix(path, "k8s.io/") || strings.HasPrefix(path, "sigs.k8s.io/") ||
			strings.Contains(path, "prometheus-operator") {
			t.Errorf("an embedder's build list has %s", line)
		}
	}
	if !strings.Contains(all, mod+" v0.0.0 => "+root) {
		t.Fatalf("go list -m all does not list the checkout:\n%s", all)
	}
	if t.Failed() {
		gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
		t.Logf("scratch go.mod after go mod tidy:\n%s", gomod)
	} else {
		t.Logf("a module importing agent, csihealth, httpapi and probes has %d modules in its build list, none from Kubernetes", n)
	}
}
