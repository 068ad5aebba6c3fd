package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// unpack extracts an OCI image-layout archive into a directory and opens
// its index (the one image index index.json names) and index.json itself.
func unpack(t *testing.T, archive string) (v1.ImageIndex, v1.IndexManifest) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: entry %s owned by %d:%d (%q:%q), want 0:0 unnamed", archive, h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sorted := append([]string(nil), names...)
	sortStrings(sorted)
	if strings.Join(sorted, " ") != strings.Join(names, " ") {
		t.Errorf("%s: entries not sorted: %v", archive, names)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var top v1.IndexManifest
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 || !top.Manifests[0].MediaType.IsIndex() {
		t.Fatalf("index.json holds %+v, want one image index", top.Manifests)
	}
	idx, err := outer.ImageIndex(top.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx, top
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// files reads every file of an image's flattened filesystem with its
// header.
func files(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Errorf("%d layers, want one", len(layers))
	}
	out := map[string]*tar.Header{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = h
		}
		rc.Close()
	}
	return out
}

// fileData returns one file's content from the image.
func fileData(t *testing.T, img v1.Image, name string) []byte {
	t.Helper()
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s not in the image", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// TestFilesPerPlatform: a generic image from files, two platforms ({arch}
// picks each one's file), directories and modes as given, everything owned
// by 0:0 with the one mtime; the same flags write the same archive byte for
// byte.
func TestFilesPerPlatform(t *testing.T) {
	src := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		if err := os.MkdirAll(filepath.Join(src, arch), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, arch, "pause"), []byte("pause for "+arch), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "conf"), []byte("x=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	args := func(name string) []string {
		return []string{"-name", "registry.example:5000/test/pause:3.10", "-C", src,
			"-file", "{arch}/pause:/pause", "-file", "conf:/etc/pause/conf", "-dir", "/tmp:1777",
			"-entrypoint", `["/pause","-v"]`, "-user", "65535:65535", "-port", "8080", "-env", "A=b",
			"-annotation", "org.opencontainers.image.version=3.10", "-created", "2024-05-06T07:08:09Z",
			"-out", filepath.Join(out, name)}
	}
	var stdout bytes.Buffer
	for _, n := range []string{"a.tar", "b.tar"} {
		if err := run(context.Background(), args(n), &stdout, io.Discard, func(string) string { return "" }); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := os.ReadFile(filepath.Join(out, "a.tar"))
	b, _ := os.ReadFile(filepath.Join(out, "b.tar"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("two runs with the same flags wrote different archives (%d and %d bytes)", len(a), len(b))
	}
	if !strings.Contains(stdout.String(), "linux/arm64 sha256:") {
		t.Errorf("output %q names no platform digest", stdout.String())
	}

	idx, top := unpack(t, filepath.Join(out, "a.tar"))
	if got := top.Manifests[0].Annotations; got[annotationContainerdName] != "registry.example:5000/test/pause:3.10" || got[annotationRefName] != "3.10" {
		t.Errorf("index.json annotations %v", got)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Annotations["org.opencontainers.image.version"] != "3.10" {
		t.Fatalf("index %+v", im)
	}
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for i, arch := range []string{"amd64", "arm64"} {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != arch || d.ArtifactType != "" {
			t.Errorf("manifest %d: platform %v, artifactType %q", i, d.Platform, d.ArtifactType)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != arch || cf.OS != "linux" || !cf.Created.Time.Equal(mtime) ||
			strings.Join(cf.Config.Entrypoint, " ") != "/pause -v" || cf.Config.User != "65535:65535" ||
			len(cf.Config.ExposedPorts) != 1 || strings.Join(cf.Config.Env, " ") != "A=b" {
			t.Errorf("%s config %+v", arch, cf)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Annotations["org.opencontainers.image.version"] != "3.10" {
			t.Errorf("%s manifest annotations %v", arch, m.Annotations)
		}
		want := map[string]int64{"pause": 0o700 | 0o055, "etc/": 0o755, "etc/pause/": 0o755, "etc/pause/conf": 0o644, "tmp/": 0o1777}
		got := files(t, img)
		if len(got) != len(want) {
			t.Errorf("%s: files %v, want %v", arch, keys(got), want)
		}
		for name, mode := range want {
			h := got[name]
			if h == nil {
				t.Errorf("%s: no %s", arch, name)
				continue
			}
			if h.Mode != mode || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(mtime) {
				t.Errorf("%s: %s mode %o uid %d gid %d mtime %v, want mode %o, 0:0, %v", arch, name, h.Mode, h.Uid, h.Gid, h.ModTime, mode, mtime)
			}
		}
		if got := string(fileData(t, img, "pause")); got != "pause for "+arch {
			t.Errorf("%s image holds the pause of %q", arch, got)
		}
	}
}

func keys(m map[string]*tar.Header) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sortStrings(k)
	return k
}

// TestBadFlags: bad input is refused with the flag and the value named.
func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"-C", dir, "-out", "o.tar"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-file", "f:/f"}, "-name is required"},
		{[]string{"-name", "Upper:1", "-file", "f:/f"}, `-name: image name "Upper:1"`},
		{[]string{"-name", "x:1", "-file", "f"}, `-file "f": want SRC:DST`},
		{[]string{"-name", "x:1", "-file", "f:/f:99"}, `mode "99"`},
		{[]string{"-name", "x:1", "-file", "f:rel"}, `destination "rel" is not an absolute path`},
		{[]string{"-name", "x:1", "-file", "missing:/f"}, "missing:/f for linux/amd64: open"},
		{[]string{"-name", "x:1", "-file", "f:/f", "-file", "f:/f"}, "/f is given twice"},
		{[]string{"-name", "x:1", "-file", "f:/f", "-platform", "linux"}, `-platform "linux"`},
		{[]string{"-name", "x:1", "-file", "f:/f", "-port", "99999"}, `-port "99999"`},
		{[]string{"-name", "x:1", "-file", "f:/f", "-entrypoint", "[1]"}, "-entrypoint"},
		{[]string{"-name", "x:1", "-file", "f:/f", "-created", "yesterday"}, `-created "yesterday"`},
		{[]string{"-name", "x:1"}, "the image would be empty"},
	} {
		err := run(context.Background(), append(append([]string(nil), base...), c.args...), io.Discard, io.Discard, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one with %q", c.args, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "o.tar")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed run left %s: %v", "o.tar", err)
	}
}

// TestNormalizeName: the names containerd and kubelet give an image
// reference (distribution/reference ParseNormalizedNamed, TagNameOnly).
func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"efs-health-agent:0.3.0":                   "docker.io/library/efs-health-agent:0.3.0",
		"efs-health-agent":                         "docker.io/library/efs-health-agent:latest",
		"acme/efs-health-agent:1":                  "docker.io/acme/efs-health-agent:1",
		"docker.io/efs-health-agent:1":             "docker.io/library/efs-health-agent:1",
		"localhost/pause:3.10":                     "localhost/pause:3.10",
		"localhost:5000/pause":                     "localhost:5000/pause:latest",
		"123.dkr.ecr.us-east-1.amazonaws.com/a:b":  "123.dkr.ecr.us-east-1.amazonaws.com/a:b",
		"ghcr.io/o/r/efs-health-agent:v1.2.3-rc.1": "ghcr.io/o/r/efs-health-agent:v1.2.3-rc.1",
	} {
		got, err := NormalizeName(in)
		if err != nil || got != want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Efs:1", "a:", ":1", "a b:1", "a/:1", "/a:1"} {
		if got, err := NormalizeName(bad); err == nil {
			t.Errorf("NormalizeName(%q) = %q, want an error", bad, got)
		}
	}
}
