package main

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// repoRoot is the agent's repository, three levels up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil ||
		!strings.HasPrefix(string(b), "module github.com/efs-health-agent/efs-health-agent\n") {
		t.Fatalf("%s is not the agent's repository: %v", root, err)
	}
	return root
}

// need skips outside CI and fails in CI, where the tools are installed.
func need(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s missing", what)
	}
	t.Skipf("%s missing", what)
}

// makeCmd runs make in the repository with the Makefile's own defaults: the
// variables a calling make or the environment may carry are dropped.
func makeCmd(t *testing.T, root string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-s", "--no-print-directory", "-C", root}, args...)...)
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		if slices.Contains([]string{"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VERSION", "LDFLAGS", "GOFLAGS"}, k) || strings.HasPrefix(k, "IMAGE") {
			continue
		}
		cmd.Env = append(cmd.Env, e)
	}
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

func gitOut(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// TestMakeImage builds the agent's image with `make image` twice, into two
// directories, and holds what operators and the node test rely on: the same
// commit gives the same archive and index digest; both platforms; the
// names ctr and skopeo import it under; the OCI annotations; the config;
// the CA certificates; and a static agent binary per platform whose
// --version (run for this machine's architecture) is the image's version.
//
// With IMAGE_TEST_COLD_CACHE=1 the second build compiles the agent with an
// empty Go build cache, so the binaries themselves are shown reproducible,
// not merely taken from the cache (several minutes more).
func TestMakeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent for two platforms twice")
	}
	root := repoRoot(t)
	_, err := exec.LookPath("make")
	need(t, "make", err == nil)
	_, err = exec.LookPath("git")
	need(t, "git", err == nil)
	const caFile = "/etc/ssl/certs/ca-certificates.crt"
	ca, err := os.ReadFile(caFile)
	need(t, caFile+" (Debian package ca-certificates)", err == nil)

	dir := t.TempDir()
	a, b := filepath.Join(dir, "a", "image.tar"), filepath.Join(dir, "b", "image.tar")
	makeCmd(t, root, nil, "image", "IMAGE_OUT="+a)
	var second []string
	if os.Getenv("IMAGE_TEST_COLD_CACHE") != "" {
		second = append(second, "GOCACHE="+filepath.Join(dir, "gocache"))
	}
	makeCmd(t, root, second, "image", "IMAGE_OUT="+b)
	ab, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	idxA, topA := unpack(t, a)
	idxB, _ := unpack(t, b)
	da, err := idxA.Digest()
	if err != nil {
		t.Fatal(err)
	}
	db, err := idxB.Digest()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("index digests: %s, %s", da, db)
	if da != db || !bytes.Equal(ab, bb) {
		t.Fatalf("two builds of one commit differ: index %s and %s, archives of %d and %d bytes", da, db, len(ab), len(bb))
	}

	name := makeCmd(t, root, nil, "image-name")
	full, err := NormalizeName(name)
	if err != nil {
		t.Fatalf("make image-name: %v", err)
	}
	if got := topA.Manifests[0].Annotations; got[annotationContainerdName] != full || !strings.HasSuffix(full, ":"+got[annotationRefName]) {
		t.Errorf("index.json names the image %v, want %s (make image-name %s)", got, full, name)
	}

	im, err := idxA.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	version := im.Annotations["org.opencontainers.image.version"]
	want := map[string]string{
		"org.opencontainers.image.source":   "https://github.com/efs-health-agent/efs-health-agent",
		"org.opencontainers.image.revision": gitOut(t, root, "rev-parse", "HEAD"),
		"org.opencontainers.image.created":  gitOut(t, root, "log", "-1", "--format=%cI"),
		"org.opencontainers.image.title":    "efs-health-agent",
		"org.opencontainers.image.version":  version,
	}
	if version == "" {
		t.Error("no org.opencontainers.image.version")
	}
	for k, v := range want {
		if im.Annotations[k] != v {
			t.Errorf("index annotation %s = %q, want %q", k, im.Annotations[k], v)
		}
	}
	created, err := time.Parse(time.RFC3339, want["org.opencontainers.image.created"])
	if err != nil {
		t.Fatal(err)
	}

	var platforms []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		p := d.Platform.String()
		platforms = append(platforms, p)
		img, err := idxA.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if m.Annotations[k] != v {
				t.Errorf("%s manifest annotation %s = %q, want %q", p, k, m.Annotations[k], v)
			}
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if cf.OS != d.Platform.OS || cf.Architecture != d.Platform.Architecture || !cf.Created.Time.Equal(created) {
			t.Errorf("%s config: os %s arch %s created %v", p, cf.OS, cf.Architecture, cf.Created)
		}
		if !slices.Equal(c.Entrypoint, []string{"/efs-health-agent"}) || c.User != "0:0" || len(c.Cmd) != 0 {
			t.Errorf("%s config: entrypoint %q cmd %q user %q, want [/efs-health-agent] and 0:0 as deploy/Dockerfile", p, c.Entrypoint, c.Cmd, c.User)
		}
		if _, ok := c.ExposedPorts["9910/tcp"]; !ok || len(c.ExposedPorts) != 1 {
			t.Errorf("%s config: exposed ports %v, want 9910/tcp", p, c.ExposedPorts)
		}
		if !slices.Contains(c.Env, "SSL_CERT_FILE="+caFile) {
			t.Errorf("%s config: env %v has no SSL_CERT_FILE", p, c.Env)
		}

		hdrs := files(t, img)
		for n, mode := range map[string]int64{"efs-health-agent": 0o755, "etc/ssl/certs/ca-certificates.crt": 0o644, "tmp/": 0o1777} {
			h := hdrs[n]
			if h == nil {
				t.Errorf("%s: no /%s in the image", p, n)
				continue
			}
			if h.Mode != mode || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(created) {
				t.Errorf("%s: /%s mode %o owner %d:%d mtime %v, want %o 0:0 %v", p, n, h.Mode, h.Uid, h.Gid, h.ModTime, mode, created)
			}
		}
		if !bytes.Equal(fileData(t, img, "etc/ssl/certs/ca-certificates.crt"), ca) {
			t.Errorf("%s: the CA certificates differ from %s", p, caFile)
		}
		checkBinary(t, img, d.Platform, version)
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64", platforms)
	}
	t.Run("skopeo", func(t *testing.T) { skopeoReads(t, a, da, topA.Manifests[0].Annotations[annotationRefName]) })
}

// skopeoReads: skopeo, which deploy/README.md pushes the archive with,
// reads the index from the archive, selects it by its tag, and copies both
// platforms with the digest unchanged (to an OCI layout: no network).
func skopeoReads(t *testing.T, archive string, digest v1.Hash, tag string) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo not installed (Debian package skopeo)")
	}
	raw, err := exec.Command(skopeo, "inspect", "--raw", "oci-archive:"+archive).Output()
	if err != nil {
		t.Fatalf("skopeo inspect --raw: %v", err)
	}
	if h, _, _ := v1.SHA256(bytes.NewReader(raw)); h != digest {
		t.Errorf("skopeo inspect --raw reads index %s, want %s", h, digest)
	}
	dst := filepath.Join(t.TempDir(), "layout")
	if out, err := exec.Command(skopeo, "copy", "-q", "--all", "oci-archive:"+archive+":"+tag, "oci:"+dst+":"+tag).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy --all: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dst, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"digest":"`+digest.String()+`"`) {
		t.Errorf("skopeo copy --all changed the index: %s, want %s", b, digest)
	}
}

// checkBinary: the agent binary is a static executable for the platform;
// for this machine's own, it runs and reports version.
func checkBinary(t *testing.T, img v1.Image, p *v1.Platform, version string) {
	t.Helper()
	bin := fileData(t, img, "efs-health-agent")
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s: /efs-health-agent is not ELF: %v", p, err)
	}
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
	if f.Machine != machine {
		t.Errorf("%s: binary for %v", p, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: the binary is dynamically linked", p)
		}
	}
	if p.OS != runtime.GOOS || p.Architecture != runtime.GOARCH {
		return
	}
	exe := filepath.Join(t.TempDir(), "efs-health-agent")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe, "--version").CombinedOutput()
	if err != nil || string(out) != "efs-health-agent "+version+"\n" {
		t.Errorf("%s: /efs-health-agent --version: %v, %q; want %q", p, err, out, "efs-health-agent "+version)
	}
}
