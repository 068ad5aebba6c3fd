package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations the image-layout's index.json puts on the image index, so that
// an import knows its name.
const (
	// annotationContainerdName is read by containerd's image import (ctr
	// images import) before anything else, and used as is: containerd
	// v1.6.20 core/images/archive/importer.go, imageName.
	annotationContainerdName = "io.containerd.image.name"
	// annotationRefName is the OCI image-layout's name for the entry
	// (image-spec v1.1 annotations.md); skopeo's oci-archive:FILE:NAME
	// selects on it, so it holds the tag alone as skopeo and crane write it.
	annotationRefName = "org.opencontainers.image.ref.name"
)

// NormalizeName turns a reference into the fully qualified form containerd
// and kubelet use: a name without a registry is on docker.io, a single-part
// name on docker.io is under library/, and a missing tag is latest
// (github.com/distribution/reference normalize.go, ParseNormalizedNamed and
// TagNameOnly). A digest reference is left as it is.
func NormalizeName(ref string) (string, error) {
	m := referenceRE.FindStringSubmatch(ref)
	if m == nil {
		return "", fmt.Errorf("image name %q is not a reference like [registry/]repository[:tag][@digest] (lower case)", ref)
	}
	name, tag, digest := m[1], m[2], m[3]
	first, remainder, hasSlash := strings.Cut(name, "/")
	switch {
	case !hasSlash:
		name = "docker.io/library/" + name
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		name = "docker.io/" + name
	case first == "docker.io" && !strings.Contains(remainder, "/"):
		name = "docker.io/library/" + remainder
	}
	if tag == "" && digest == "" {
		tag = ":latest"
	}
	return name + tag + digest, nil
}

// referenceRE is distribution/reference's grammar, shortened: an optional
// registry host[:port], lower-case path components, an optional tag and an
// optional sha256 digest.
var referenceRE = regexp.MustCompile(`^((?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)(:[\w][\w.-]{0,127})?(@sha256:[a-f0-9]{64})?$`)

// blob is one file under blobs/sha256 in the layout.
type blob struct {
	size int64
	open func() (io.ReadCloser, error)
}

// WriteArchive writes idx as an OCI image-layout tar archive to out
// (atomically: a temporary file renamed into place). The entries are
// sorted, owned by 0:0 and carry mtime, so the archive, like the index,
// is the same for the same input.
func WriteArchive(out string, idx v1.ImageIndex, name string, mtime time.Time) error {
	full, err := NormalizeName(name)
	if err != nil {
		return err
	}
	tag := ""
	if i := strings.LastIndex(full, ":"); i > strings.LastIndex(full, "/") && !strings.Contains(full, "@") {
		tag = full[i+1:]
	}
	blobs := map[string]blob{}
	if err := collectIndex(idx, blobs); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("index digest: %w", err)
	}
	size, err := idx.Size()
	if err != nil {
		return fmt.Errorf("index size: %w", err)
	}
	anns := map[string]string{annotationContainerdName: full}
	if tag != "" {
		anns[annotationRefName] = tag
	}
	top := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType:   types.OCIImageIndex,
			Digest:      d,
			Size:        size,
			Annotations: anns,
		}},
	}
	indexJSON, err := json.Marshal(top)
	if err != nil {
		return fmt.Errorf("index.json: %w", err)
	}

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("-out %s: %w", out, err)
	}
	f, err := os.CreateTemp(filepath.Dir(out), ".oci-archive-*")
	if err != nil {
		return fmt.Errorf("-out %s: %w", out, err)
	}
	defer os.Remove(f.Name())
	tw := tar.NewWriter(f)
	mtime = mtime.UTC().Truncate(time.Second)
	writeDir := func(n string) error {
		return tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime})
	}
	writeFile := func(n string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: mtime}); err != nil {
			return err
		}
		written, err := io.Copy(tw, r)
		if err == nil && written != size {
			err = fmt.Errorf("%d bytes, not %d", written, size)
		}
		return err
	}
	digests := make([]string, 0, len(blobs))
	for h := range blobs {
		digests = append(digests, h)
	}
	sort.Strings(digests)
	err = writeDir("blobs/")
	if err == nil {
		err = writeDir("blobs/sha256/")
	}
	for _, h := range digests {
		if err != nil {
			break
		}
		b := blobs[h]
		var rc io.ReadCloser
		if rc, err = b.open(); err != nil {
			break
		}
		err = writeFile("blobs/sha256/"+h, b.size, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			err = fmt.Errorf("blob sha256:%s: %w", h, err)
		}
	}
	if err == nil {
		err = writeFile("index.json", int64(len(indexJSON)), strings.NewReader(string(indexJSON)))
	}
	if err == nil {
		layout := `{"imageLayoutVersion":"1.0.0"}`
		err = writeFile("oci-layout", int64(len(layout)), strings.NewReader(layout))
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), out)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// collectIndex adds the index's own manifest and everything it refers to.
func collectIndex(idx v1.ImageIndex, blobs map[string]blob) error {
	raw, err := idx.RawManifest()
	if err != nil {
		return fmt.Errorf("index manifest: %w", err)
	}
	addRaw(blobs, raw)
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("index manifest: %w", err)
	}
	for _, desc := range im.Manifests {
		switch {
		case desc.MediaType.IsIndex():
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return fmt.Errorf("index %s: %w", desc.Digest, err)
			}
			if err := collectIndex(child, blobs); err != nil {
				return err
			}
		case desc.MediaType.IsImage():
			img, err := idx.Image(desc.Digest)
			if err != nil {
				return fmt.Errorf("image %s: %w", desc.Digest, err)
			}
			if err := collectImage(img, blobs); err != nil {
				return fmt.Errorf("image %s: %w", desc.Digest, err)
			}
		default:
			return fmt.Errorf("manifest %s has media type %s, neither an image nor an index", desc.Digest, desc.MediaType)
		}
	}
	return nil
}

func collectImage(img v1.Image, blobs map[string]blob) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	addRaw(blobs, raw)
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	addRaw(blobs, cfg)
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		blobs[d.Hex] = blob{size: size, open: l.Compressed}
	}
	return nil
}

func addRaw(blobs map[string]blob, raw []byte) {
	h, _, _ := v1.SHA256(strings.NewReader(string(raw)))
	blobs[h.Hex] = blob{size: int64(len(raw)), open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(string(raw))), nil
	}}
}
