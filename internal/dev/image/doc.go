// Command image builds a multi-platform OCI image without docker and writes
// it as an OCI image-layout tar archive: `make image` builds the agent's
// image with it, and tests build small images (a pause image, a stand-in CSI
// driver) the same way.
//
// It is a module of its own, so that the agent's module does not depend on
// go-containerregistry. Run it from the repository root with go -C, and give
// -C the root so that relative paths mean what they say there:
//
//	GOWORK=off go -C internal/dev/image run . -C "$PWD" \
//	    -name efs-health-agent:0.3.0 -platform linux/amd64,linux/arm64 \
//	    -gobuild ./cmd/efs-health-agent:/efs-health-agent \
//	    -ldflags '-s -w -X main.version=0.3.0' \
//	    -file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644 \
//	    -entrypoint /efs-health-agent -user 0:0 -port 9910/tcp \
//	    -annotation org.opencontainers.image.version=0.3.0 \
//	    -out bin/image/efs-health-agent.oci.tar
//
// The Makefile has this command line as $(IMAGE_TOOL).
//
// # Flags
//
//	-name REF           the image's name, e.g. efs-health-agent:0.3.0 (required).
//	                    The archive's index.json names the image index with it,
//	                    normalized as containerd and kubelet do (a name without
//	                    a registry is on docker.io, a one-part name under
//	                    library/, no tag means latest): annotation
//	                    io.containerd.image.name, which ctr images import uses
//	                    as is, and org.opencontainers.image.ref.name with the
//	                    tag, which oci-archive:FILE:TAG selects in skopeo.
//	-out FILE           the archive to write (required); written to a temporary
//	                    file and renamed, parent directories are created.
//	-platform LIST      os/arch[/variant],... (default linux/amd64,linux/arm64);
//	                    one image per platform, all in one image index.
//	-file SRC:DST[:MODE]
//	                    copy file SRC to the absolute path DST; {os}, {arch} and
//	                    {variant} in SRC are replaced per platform (for binaries
//	                    built elsewhere, e.g. bin/{arch}/pause). MODE is octal;
//	                    without it 0755 if SRC has an execute bit, else 0644.
//	-gobuild PKG:DST    cross-build Go package PKG (in -C's module) for each
//	                    platform into DST, mode 0755, with CGO_ENABLED=0,
//	                    -trimpath, -buildvcs=false, GOAMD64=v1, GOARM64=v8.0,
//	                    GOWORK=off (the go.mod, not a workspace) and
//	                    -ldflags plus -buildid=, so the binary is reproducible.
//	-ldflags FLAGS      go build -ldflags for -gobuild (default "-s -w"), e.g.
//	                    '-s -w -X main.version=0.3.0'.
//	-dir DST[:MODE]     an empty directory (default mode 0755), e.g. /tmp:1777.
//	-entrypoint ARGV    config Entrypoint: one path, or a JSON array.
//	-cmd ARGV           config Cmd: one word, or a JSON array.
//	-user USER          config User, e.g. 0:0.
//	-workdir DIR        config WorkingDir.
//	-env KEY=VALUE      config Env (repeatable).
//	-port PORT[/PROTO]  config ExposedPorts (repeatable; default protocol tcp).
//	-annotation KEY=VALUE
//	                    on every platform's manifest, on the index, and as a
//	                    config label (repeatable).
//	-created TIME       RFC 3339 or Unix seconds; the config's created, the
//	                    history entry and every file's mtime. Default
//	                    $SOURCE_DATE_EPOCH, else the Unix epoch. `make image`
//	                    gives the commit time.
//	-C DIR              relative -file sources, -out and -gobuild packages are
//	                    taken from DIR (go build runs there).
//
// -file, -dir, -gobuild, -annotation, -env and -port repeat. Every parent
// directory of a file is an entry of its own (mode 0755).
//
// # Reproducible
//
// The same flags and inputs give the same index digest: each platform's image
// is one gzip layer whose tar entries are sorted by name, owned by 0:0 with
// no user or group names, all with the -created mtime; the config's times are
// -created; maps are written in sorted order (encoding/json); the archive's
// own entries are sorted and carry the same mtime. The digest depends on the
// Go toolchain (the compiler's output and compress/gzip), which the root
// go.mod pins.
//
// On success it prints the index digest and each platform's manifest digest.
package main
