package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Spec is what one image index is built from. Every field that reaches the
// image is either given here or fixed, so one Spec always gives one digest.
type Spec struct {
	Name        string            // reference, e.g. efs-health-agent:0.3.0
	Platforms   []v1.Platform     // one image per platform, in this order
	Files       []FileSpec        // files copied into the layer
	Dirs        []DirSpec         // empty directories created in the layer
	GoBuilds    []GoBuildSpec     // Go packages cross-built per platform
	GoDir       string            // directory go build runs in (the module holding the packages)
	LDFlags     string            // -ldflags for go build; -buildid= is always added
	Entrypoint  []string          // config Entrypoint
	Cmd         []string          // config Cmd
	User        string            // config User
	WorkingDir  string            // config WorkingDir
	Env         []string          // config Env, K=V
	Ports       []string          // config ExposedPorts, e.g. 9910/tcp
	Annotations map[string]string // on every manifest and on the index; also config labels
	Created     time.Time         // config created, history, every file's mtime
	Stderr      io.Writer         // go build's output; nil discards it
}

// FileSpec copies Src (after {os}, {arch} and {variant} are replaced by the
// platform's) to Dst in the image, with Mode (0 keeps 0755 for a source with
// any execute bit, else 0644).
type FileSpec struct {
	Src, Dst string
	Mode     fs.FileMode
}

// DirSpec is an empty directory in the image.
type DirSpec struct {
	Dst  string
	Mode fs.FileMode
}

// GoBuildSpec cross-builds the Go package Pkg (relative to Spec.GoDir) for
// each platform and puts the binary at Dst, mode 0755.
type GoBuildSpec struct {
	Pkg, Dst string
}

// entry is one regular file or directory of the layer.
type entry struct {
	dir  bool
	mode fs.FileMode
	data []byte
}

// Build builds the image index: one single-layer image per platform.
func Build(ctx context.Context, s Spec) (v1.ImageIndex, error) {
	if len(s.Platforms) == 0 {
		return nil, errors.New("no platform given (-platform)")
	}
	if s.Created.IsZero() {
		s.Created = time.Unix(0, 0)
	}
	s.Created = s.Created.UTC().Truncate(time.Second)
	tmp, err := os.MkdirTemp("", "oci-image-build-")
	if err != nil {
		return nil, fmt.Errorf("go build output directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range s.Platforms {
		files, err := layerFiles(ctx, s, p, tmp)
		if err != nil {
			return nil, err
		}
		img, err := platformImage(s, p, files)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p, err)
		}
		plat := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        plainImage{img},
			Descriptor: v1.Descriptor{Platform: &plat},
		})
	}
	if len(s.Annotations) > 0 {
		idx = mutate.Annotations(idx, s.Annotations).(v1.ImageIndex)
	}
	return idx, nil
}

// layerFiles gathers the files and directories of platform p's layer.
func layerFiles(ctx context.Context, s Spec, p v1.Platform, tmp string) (map[string]entry, error) {
	files := map[string]entry{}
	add := func(dst string, e entry) error {
		clean, err := cleanDst(dst)
		if err != nil {
			return err
		}
		if old, ok := files[clean]; ok && !(old.dir && e.dir) {
			return fmt.Errorf("%s is given twice", dst)
		}
		files[clean] = e
		return nil
	}
	for _, d := range s.Dirs {
		if err := add(d.Dst, entry{dir: true, mode: d.Mode}); err != nil {
			return nil, fmt.Errorf("-dir %s: %w", d.Dst, err)
		}
	}
	for _, f := range s.Files {
		src := expand(f.Src, p)
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("-file %s:%s for %s: %w", f.Src, f.Dst, p, err)
		}
		mode := f.Mode
		if mode == 0 {
			st, err := os.Stat(src)
			if err != nil {
				return nil, fmt.Errorf("-file %s: %w", src, err)
			}
			mode = 0o644
			if st.Mode()&0o111 != 0 {
				mode = 0o755
			}
		}
		if err := add(f.Dst, entry{mode: mode, data: data}); err != nil {
			return nil, fmt.Errorf("-file %s:%s: %w", f.Src, f.Dst, err)
		}
	}
	for i, g := range s.GoBuilds {
		out := filepath.Join(tmp, fmt.Sprintf("%s-%s-%s-%d", p.OS, p.Architecture, p.Variant, i))
		if err := goBuild(ctx, s, p, g.Pkg, out); err != nil {
			return nil, fmt.Errorf("-gobuild %s:%s for %s: %w", g.Pkg, g.Dst, p, err)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			return nil, fmt.Errorf("-gobuild %s: %w", g.Pkg, err)
		}
		if err := add(g.Dst, entry{mode: 0o755, data: data}); err != nil {
			return nil, fmt.Errorf("-gobuild %s:%s: %w", g.Pkg, g.Dst, err)
		}
	}
	// Every parent directory is an entry of its own, so that the layer
	// unpacks the same way with every runtime.
	for name := range files {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if _, ok := files[d]; !ok {
				files[d] = entry{dir: true, mode: 0o755}
			}
		}
	}
	return files, nil
}

// cleanDst turns an absolute image path into a tar entry name.
func cleanDst(dst string) (string, error) {
	if !strings.HasPrefix(dst, "/") {
		return "", fmt.Errorf("destination %q is not an absolute path", dst)
	}
	clean := strings.TrimPrefix(path.Clean(dst), "/")
	if clean == "" {
		return "", fmt.Errorf("destination %q is the root", dst)
	}
	return clean, nil
}

func expand(src string, p v1.Platform) string {
	return strings.NewReplacer("{os}", p.OS, "{arch}", p.Architecture, "{variant}", p.Variant).Replace(src)
}

// goBuild cross-builds pkg for p into out, reproducibly: no cgo, no paths of
// this machine (-trimpath), no VCS stamp, no build ID, the architecture's
// baseline instruction set and the module's own go.mod (no go.work),
// whatever the environment says.
func goBuild(ctx context.Context, s Spec, p v1.Platform, pkg, out string) error {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	ldflags := strings.TrimSpace(s.LDFlags + " -buildid=")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = s.GoDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture,
		"GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=", "GOWORK=off")
	if p.Architecture == "arm" && strings.HasPrefix(p.Variant, "v") {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &errOut, &errOut
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, errOut.String())
	}
	if s.Stderr != nil {
		_, _ = s.Stderr.Write(errOut.Bytes())
	}
	return nil
}

// layerTar writes the layer's entries sorted by name, owned by 0:0, with the
// one fixed mtime and no user or group names.
func layerTar(files map[string]entry, mtime time.Time) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := files[n]
		h := &tar.Header{Name: n, ModTime: mtime, Mode: int64(e.mode.Perm())}
		// tar keeps the special bits in its own encoding.
		if e.mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		if e.mode&fs.ModeSetgid != 0 {
			h.Mode |= 0o2000
		}
		if e.mode&fs.ModeSetuid != 0 {
			h.Mode |= 0o4000
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", n, err)
		}
		if !e.dir {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("layer entry %s: %w", n, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// platformImage is the single-layer image of platform p.
func platformImage(s Spec, p v1.Platform, files map[string]entry) (v1.Image, error) {
	raw, err := layerTar(files, s.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	created := v1.Time{Time: s.Created}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "internal/dev/image", Comment: "single layer"},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = created
	cf.OS = p.OS
	cf.Architecture = p.Architecture
	cf.Variant = p.Variant
	cf.OSVersion = p.OSVersion
	cf.Config = v1.Config{
		Entrypoint: s.Entrypoint,
		Cmd:        s.Cmd,
		User:       s.User,
		WorkingDir: s.WorkingDir,
		Env:        s.Env,
	}
	if len(s.Ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, port := range s.Ports {
			cf.Config.ExposedPorts[port] = struct{}{}
		}
	}
	if len(s.Annotations) > 0 {
		cf.Config.Labels = map[string]string{}
		for k, v := range s.Annotations {
			cf.Config.Labels[k] = v
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(s.Annotations) > 0 {
		img = mutate.Annotations(img, s.Annotations).(v1.Image)
	}
	return img, nil
}

// plainImage is an image whose index descriptor has no artifactType:
// go-containerregistry would otherwise write the config's media type there,
// which image-spec v1.1 (descriptor.md) reserves for artifacts, and which
// docker, buildkit and crane leave out for images.
type plainImage struct{ v1.Image }

func (plainImage) ArtifactType() (string, error) { return "", nil }
