package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		stop()
		os.Exit(1)
	}
}

// multi is a repeatable flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, " ") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// run parses the flags, builds the index and writes the archive.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fset := flag.NewFlagSet("image", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var files, dirs, gobuilds, anns, envs, ports multi
	var (
		name      = fset.String("name", "", "image reference the archive names, e.g. efs-health-agent:0.3.0 (required)")
		platforms = fset.String("platform", "linux/amd64,linux/arm64", "comma-separated os/arch[/variant] list")
		out       = fset.String("out", "", "the OCI image-layout tar archive to write (required)")
		entry     = fset.String("entrypoint", "", "entrypoint: one path, or a JSON array")
		cmdArgs   = fset.String("cmd", "", "cmd: one word, or a JSON array")
		user      = fset.String("user", "", "config User, e.g. 0:0")
		workdir   = fset.String("workdir", "", "config WorkingDir")
		dir       = fset.String("C", "", "directory relative paths (-file SRC, -out) and -gobuild packages are taken from (default: the current directory)")
		ldflags   = fset.String("ldflags", "-s -w", "go build -ldflags for -gobuild (-buildid= is always added)")
		created   = fset.String("created", "", "creation time: RFC 3339 or Unix seconds (default $SOURCE_DATE_EPOCH, else 1970-01-01T00:00:00Z)")
	)
	fset.Var(&files, "file", "SRC:DST[:MODE] copy SRC ({os}, {arch}, {variant} replaced per platform) to DST, MODE octal (repeatable)")
	fset.Var(&dirs, "dir", "DST[:MODE] empty directory, MODE octal, default 0755 (repeatable)")
	fset.Var(&gobuilds, "gobuild", "PKG:DST cross-build Go package PKG (run in -C) for each platform to DST (repeatable)")
	fset.Var(&anns, "annotation", "KEY=VALUE on every manifest, on the index and as a config label (repeatable)")
	fset.Var(&envs, "env", "KEY=VALUE config Env (repeatable)")
	fset.Var(&ports, "port", "PORT/PROTO config ExposedPorts, e.g. 9910/tcp (repeatable)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: every input is a flag", fset.Arg(0))
	}
	if *name == "" {
		return errors.New("-name is required (e.g. -name efs-health-agent:0.3.0)")
	}
	if _, err := NormalizeName(*name); err != nil {
		return fmt.Errorf("-name: %w", err)
	}
	if *out == "" {
		return errors.New("-out is required (the .tar archive to write)")
	}
	s := Spec{Name: *name, GoDir: *dir, LDFlags: *ldflags, User: *user, WorkingDir: *workdir, Env: envs, Stderr: stderr}
	var err error
	if s.Platforms, err = parsePlatforms(*platforms); err != nil {
		return err
	}
	if s.Entrypoint, err = parseArgv("-entrypoint", *entry); err != nil {
		return err
	}
	if s.Cmd, err = parseArgv("-cmd", *cmdArgs); err != nil {
		return err
	}
	if s.Created, err = parseCreated(*created, getenv("SOURCE_DATE_EPOCH")); err != nil {
		return err
	}
	for _, f := range files {
		src, rest, ok := strings.Cut(f, ":")
		if !ok || src == "" || rest == "" {
			return fmt.Errorf("-file %q: want SRC:DST[:MODE]", f)
		}
		dst, modeText, _ := strings.Cut(rest, ":")
		mode, err := parseMode(modeText, 0)
		if err != nil {
			return fmt.Errorf("-file %q: %w", f, err)
		}
		s.Files = append(s.Files, FileSpec{Src: inDir(*dir, src), Dst: dst, Mode: mode})
	}
	for _, d := range dirs {
		dst, modeText, _ := strings.Cut(d, ":")
		mode, err := parseMode(modeText, 0o755)
		if err != nil {
			return fmt.Errorf("-dir %q: %w", d, err)
		}
		s.Dirs = append(s.Dirs, DirSpec{Dst: dst, Mode: mode})
	}
	for _, g := range gobuilds {
		pkg, dst, ok := strings.Cut(g, ":")
		if !ok || pkg == "" || dst == "" {
			return fmt.Errorf("-gobuild %q: want PKG:DST", g)
		}
		s.GoBuilds = append(s.GoBuilds, GoBuildSpec{Pkg: pkg, Dst: dst})
	}
	for _, a := range anns {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return fmt.Errorf("-annotation %q: want KEY=VALUE", a)
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
	for _, e := range envs {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("-env %q: want KEY=VALUE", e)
		}
	}
	for _, p := range ports {
		num, proto, _ := strings.Cut(p, "/")
		if n, err := strconv.Atoi(num); err != nil || n < 1 || n > 65535 || (proto != "" && proto != "tcp" && proto != "udp" && proto != "sctp") {
			return fmt.Errorf("-port %q: want PORT[/tcp|udp|sctp]", p)
		}
		if proto == "" {
			p += "/tcp"
		}
		s.Ports = append(s.Ports, p)
	}
	if len(s.Files)+len(s.GoBuilds)+len(s.Dirs) == 0 {
		return errors.New("the image would be empty: give -file, -gobuild or -dir")
	}

	idx, err := Build(ctx, s)
	if err != nil {
		return err
	}
	if err := WriteArchive(inDir(*dir, *out), idx, s.Name, s.Created); err != nil {
		return err
	}
	return report(stdout, *out, idx)
}

// report prints the index digest and each platform's manifest digest.
func report(w io.Writer, out string, idx v1.ImageIndex) error {
	d, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("index digest: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("index manifest: %w", err)
	}
	fmt.Fprintf(w, "%s: index %s\n", out, d)
	for _, m := range im.Manifests {
		fmt.Fprintf(w, "  %s %s\n", m.Platform, m.Digest)
	}
	return nil
}

// inDir resolves a relative path against -C, as make -C and go -C do.
func inDir(dir, p string) string {
	if dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func parsePlatforms(list string) ([]v1.Platform, error) {
	var ps []v1.Platform
	seen := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		parts := strings.Split(s, "/")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("-platform %q: want os/arch[/variant], e.g. linux/arm64", s)
		}
		p := v1.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) == 3 {
			p.Variant = parts[2]
		}
		if seen[p.String()] {
			return nil, fmt.Errorf("-platform: %s given twice", p)
		}
		seen[p.String()] = true
		ps = append(ps, p)
	}
	return ps, nil
}

func parseArgv(flagName, s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if !strings.HasPrefix(s, "[") {
		return []string{s}, nil
	}
	var argv []string
	if err := json.Unmarshal([]byte(s), &argv); err != nil {
		return nil, fmt.Errorf("%s %q: not a JSON array of strings: %w", flagName, s, err)
	}
	return argv, nil
}

func parseCreated(flagValue, epoch string) (time.Time, error) {
	v, what := flagValue, "-created"
	if v == "" {
		v, what = epoch, "SOURCE_DATE_EPOCH"
	}
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want RFC 3339 or Unix seconds", what, v)
	}
	return t.UTC(), nil
}

func parseMode(s string, def fs.FileMode) (fs.FileMode, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("mode %q: want octal like 0755", s)
	}
	mode := fs.FileMode(n & 0o777)
	if n&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	if n&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if n&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	return mode, nil
}
