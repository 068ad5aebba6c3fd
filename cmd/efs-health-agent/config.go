package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
	"github.com/efs-health-agent/efs-health-agent/probes"
)

// Bounds of the duration settings. A check interval or timeout under
// minCheckInterval turns the agent into a busy loop on the mounts it
// guards; the upper bounds keep every sum of times far from overflowing.
const (
	minCheckInterval = 100 * time.Millisecond
	maxCheckInterval = agent.MaxInterval
)

// errVersion is returned by parseConfig for --version.
var errVersion = errors.New("version requested")

// config is every setting of the agent, parsed once here: flags win over
// environment variables, which win over defaults.
type config struct {
	Interval    time.Duration
	Timeout     time.Duration
	Port        int
	BindAddress string
	Mounts      []string
	NodeName    string
	LogLevel    string
	LogFormat   string
	EnableDebug bool
	// MaxConnections caps the open HTTP connections.
	MaxConnections int

	DiscoverFSTypes   []string
	DiscoverPrefix    string
	MountInfo         string
	DiscoveryInterval time.Duration
	EFSStateDir       string

	TraceSlowThreshold time.Duration

	// RequireWriteCheck makes a refused create of the probe file
	// (EACCES/EPERM) a failure instead of a write-denied check.
	RequireWriteCheck bool
	// ProbeLocation is where probe files are made: "dir" (the agent's
	// directory under the mount root) or "root" (the mount root itself).
	ProbeLocation string
	// GroupChecks makes the mounts of one file system share one full
	// check per interval (agent.Config.Grouping).
	GroupChecks bool

	// origin names where each setting came from ("--port", "HEALTH_PORT"
	// or "default"), by flag name, so errors name what the user has to
	// fix.
	origin map[string]string
}

// setting is one configuration knob: its flag, environment variable,
// default and help text, and the function that parses and validates a
// value of it into the config.
type setting struct {
	flag, env, def, usage string
	// none is what --help shows as the default when def is empty: what
	// the setting then means (all interfaces, the hostname, no discovery).
	none string
	// list settings take several values: the flag repeated, the variable
	// comma-separated; set is called once per value.
	list bool
	// set stores v in c, or says why v is not a valid value.
	set func(c *config, v string) error
}

var settings = []setting{
	{flag: "check-interval", env: "HEALTH_CHECK_INTERVAL", def: "30s", usage: "how often each mount is checked (Go duration, 100ms to 24h)",
		set: duration(func(c *config) *time.Duration { return &c.Interval }, minCheckInterval, maxCheckInterval)},
	{flag: "check-timeout", env: "HEALTH_CHECK_TIMEOUT", def: "5s", usage: "deadline of one check (100ms to 24h); must not exceed the interval",
		set: duration(func(c *config) *time.Duration { return &c.Timeout }, minCheckInterval, maxCheckInterval)},
	{flag: "port", env: "HEALTH_PORT", def: "9910", usage: "TCP port of the health, metrics and status endpoints (1-65535)",
		set: number(func(c *config) *int { return &c.Port }, 1, 65535, "must be a port number from 1 to 65535")},
	{flag: "bind-address", env: "HEALTH_BIND_ADDRESS", none: "all interfaces", usage: "IP address to listen on, or localhost", set: setBindAddress},
	{flag: "mount", env: "HEALTH_MOUNTS", list: true, none: "none", usage: "absolute mount path to check; flag repeatable, variable comma-separated; a path that is no mount point is checked as a plain directory", set: addMount},
	{flag: "node-name", env: "HEALTH_NODE_NAME", none: "$NODE_NAME, else the hostname", usage: "name of this node in probe file names, service.instance.id and the status page",
		set: func(c *config, v string) error { c.NodeName = strings.TrimSpace(v); return nil }},
	{flag: "log-level", env: "HEALTH_LOG_LEVEL", def: "info", usage: "log level: debug, info, warn or error",
		set: oneOf(func(c *config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
	{flag: "log-format", env: "HEALTH_LOG_FORMAT", def: "text", usage: "log format: text or json",
		set: oneOf(func(c *config) *string { return &c.LogFormat }, "text", "json")},
	{flag: "max-connections", env: "HEALTH_MAX_CONNECTIONS", def: "256", usage: "most HTTP connections open at once (16-65536); at the cap the longest-idle one is closed to admit a new one",
		set: number(func(c *config) *int { return &c.MaxConnections }, 16, 65536, "must be a number from 16 to 65536")},
	{flag: "enable-debug", env: "HEALTH_ENABLE_DEBUG", def: "false", usage: "serve /debug/pprof/ (off by default); the flag alone means true, or give --enable-debug=false",
		set: boolean(func(c *config) *bool { return &c.EnableDebug })},
	{flag: "discover-fstypes", env: "HEALTH_DISCOVER_FSTYPES", none: "none (no discovery)", usage: "comma-separated filesystem types to discover from the mount table, as the kernel lists them, e.g. nfs4,nfs (EFS mounts made by mount.efs are nfs4)", set: setFSTypes},
	{flag: "discover-prefix", env: "HEALTH_DISCOVER_PREFIX", def: "/var/lib/kubelet/pods", usage: "only mounts under this directory are discovered",
		set: path(func(c *config) *string { return &c.DiscoverPrefix }, "must be an absolute, clean directory path")},
	{flag: "mountinfo", env: "HEALTH_MOUNTINFO", def: "/proc/self/mountinfo", usage: "mount table to follow (e.g. /host/proc/1/mountinfo)",
		set: path(func(c *config) *string { return &c.MountInfo }, "must be an absolute, clean file path")},
	{flag: "efs-state-dir", env: "HEALTH_EFS_STATE_DIR", def: "/var/run/efs", usage: "efs-utils state directory, read to tell the file system, access point and service of a mount through efs-proxy (source 127.0.0.1:<subpath>)",
		set: path(func(c *config) *string { return &c.EFSStateDir }, "must be an absolute, clean directory path")},
	{flag: "discovery-interval", env: "HEALTH_DISCOVERY_INTERVAL", def: "10s", usage: "longest time between two reads of the mount table, 1s to 1h (changes are also noticed at once)",
		set: duration(func(c *config) *time.Duration { return &c.DiscoveryInterval }, discovery.MinInterval, discovery.MaxInterval)},
	{flag: "require-write-check", env: "HEALTH_REQUIRE_WRITE_CHECK", def: "false", usage: "count a refused create of the probe file (EACCES/EPERM, e.g. root squash) as the failure permission_denied instead of checking the mount read-only in mode write-denied",
		set: boolean(func(c *config) *bool { return &c.RequireWriteCheck })},
	{flag: "probe-location", env: "HEALTH_PROBE_LOCATION", def: "dir", usage: "where probe files are made: dir (in " + probes.DirName + "/ under the mount root, so that a check never changes the root that every client of the volume caches) or root (in the mount root, as earlier versions did, for volumes where no directory may be added; checks then run in mode read-write-root)",
		set: oneOf(func(c *config) *string { return &c.ProbeLocation }, "dir", "root")},
	{flag: "group-checks", env: "HEALTH_GROUP_CHECKS", def: "false", usage: "group the mounts of one file system (same file system, access point and path, or one superblock): one full check (write, read back, delete) per group and interval, rotating through the mounts, and a statfs on every other mount to prove its own connection; false checks every mount in full",
		set: boolean(func(c *config) *bool { return &c.GroupChecks })},
	{flag: "trace-slow-threshold", env: "HEALTH_TRACE_SLOW_THRESHOLD", def: "500ms", usage: "a check at least this slow always keeps its spans, like a failed one; faster healthy checks are sampled (OTEL_TRACES_SAMPLER)",
		set: duration(func(c *config) *time.Duration { return &c.TraceSlowThreshold }, time.Millisecond, agent.MaxInterval)},
}

// duration parses a Go duration from lo to hi into the field f returns.
func duration(f func(*config) *time.Duration, lo, hi time.Duration) func(*config, string) error {
	return func(c *config, v string) (err error) {
		*f(c), err = parseDuration(v, lo, hi)
		return err
	}
}

// number parses a decimal integer from lo to hi into the field f
// returns; why is the error otherwise.
func number(f func(*config) *int, lo, hi int, why string) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < lo || n > hi {
			return errors.New(why)
		}
		*f(c) = n
		return nil
	}
}

// boolean parses true or false (as strconv.ParseBool) into the field f
// returns.
func boolean(f func(*config) *bool) func(*config, string) error {
	return func(c *config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return errors.New("must be true or false")
		}
		*f(c) = b
		return nil
	}
}

// oneOf stores one of the words (case-insensitive, as lower case) in the
// field f returns.
func oneOf(f func(*config) *string, words ...string) func(*config, string) error {
	why := "must be " + strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
	return func(c *config, v string) error {
		if v = strings.ToLower(v); !slices.Contains(words, v) {
			return errors.New(why)
		}
		*f(c) = v
		return nil
	}
}

// path stores an absolute, clean path in the field f returns; why is the
// error otherwise.
func path(f func(*config) *string, why string) func(*config, string) error {
	return func(c *config, v string) error {
		v = strings.TrimSpace(v)
		if agent.ValidatePath(v) != nil {
			return errors.New(why)
		}
		*f(c) = v
		return nil
	}
}

func setBindAddress(c *config, v string) error {
	v = strings.TrimSpace(v)
	if v != "" && net.ParseIP(strings.Trim(v, "[]")) == nil && v != "localhost" {
		return errors.New("must be an IP address or localhost")
	}
	c.BindAddress = v
	return nil
}

// addMount adds one mount path; a path given twice is checked once.
func addMount(c *config, v string) error {
	if err := agent.ValidatePath(v); err != nil {
		return err
	}
	if !slices.Contains(c.Mounts, v) {
		c.Mounts = append(c.Mounts, v)
	}
	return nil
}

func setFSTypes(c *config, v string) error {
	c.DiscoverFSTypes = nil
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			if strings.ContainsAny(t, " \t/") {
				return fmt.Errorf("%q is not a filesystem type", t)
			}
			c.DiscoverFSTypes = append(c.DiscoverFSTypes, t)
		}
	}
	return nil
}

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// boolText is the flag of a boolean setting: given alone (--enable-debug)
// it means true; --enable-debug=false is accepted too. The text is
// validated with the other settings, so errors name the flag.
type boolText struct{ v *string }

func (b boolText) String() string {
	if b.v == nil {
		return ""
	}
	return *b.v
}
func (b boolText) Set(v string) error { *b.v = v; return nil }
func (boolText) IsBoolFlag() bool     { return true }

// isBool reports whether a setting is a boolean (its default is one):
// its flag may be given alone.
func (s setting) isBool() bool { return s.def == "true" || s.def == "false" }

// usage prints the help text documenting every setting.
func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, `Usage:
  efs-health-agent [flags]          run the agent
  efs-health-agent check [flags] PATH...
                                    check each PATH once and print the result
                                    (exit 0 when all are healthy, 1 otherwise);
                                    a PATH that is no mount point is not_mounted,
                                    a plain directory is checked with --mount
  efs-health-agent --version        print the version

Exit status 2 means a setting is invalid or cannot be used (a port already
in use, a mount table that cannot be read); the message names it.

Settings (flag, environment variable, default). Flags win over the environment.
`)
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = s.none
		}
		fmt.Fprintf(w, "  --%-16s %-24s default %s\n      %s\n", s.flag, s.env, def, s.usage)
	}
	fmt.Fprint(w, `
OpenTelemetry export is configured by the standard OTEL_* variables
(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER,
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_METRIC_EXPORT_INTERVAL).
With none set, nothing is pushed. Failed, timed-out and slow checks always
keep their spans; healthy ones are sampled by OTEL_TRACES_SAMPLER and
OTEL_TRACES_SAMPLER_ARG (default parentbased_traceidratio, 0.01).
`)
}

// parseConfig reads the environment (through getenv) and args, and
// validates every setting. It returns flag.ErrHelp for --help, and
// otherwise an error naming the setting and the bad value.
func parseConfig(name string, args []string, getenv func(string) string, out io.Writer) (*config, []string, error) {
	fs, flags, err := parseFlags(name, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(out, fs)
		}
		return nil, nil, err
	}
	c := &config{origin: map[string]string{}}
	text := map[string]string{} // each setting's value as given
	for _, s := range settings {
		vals, from := []string{s.def}, "default"
		if v, ok := lookup(getenv, s.env); ok {
			vals, from = []string{v}, s.env
			if s.list {
				vals = strings.Split(v, ",")
			}
		}
		if v, ok := flags[s.flag]; ok {
			vals, from = v, "--"+s.flag
		}
		c.origin[s.flag], text[s.flag] = from, strings.Join(vals, ",")
		for _, v := range vals {
			if s.list && from != "--"+s.flag && strings.TrimSpace(v) == "" {
				continue // an empty list, or a stray comma
			}
			if s.list && from == s.env {
				v = strings.TrimSpace(v)
			}
			if err := s.set(c, v); err != nil {
				return nil, nil, fmt.Errorf("invalid %s=%q: %w", from, v, err)
			}
		}
	}
	if c.Timeout > c.Interval {
		iv := fmt.Sprintf("%s=%q", c.origin["check-interval"], text["check-interval"])
		if c.origin["check-interval"] == "default" {
			iv = text["check-interval"] + ", the default"
		}
		return nil, nil, fmt.Errorf("invalid %s=%q: must not exceed the check interval (%s)", c.origin["check-timeout"], text["check-timeout"], iv)
	}
	if c.NodeName == "" {
		if v, ok := lookup(getenv, "NODE_NAME"); ok && strings.TrimSpace(v) != "" {
			c.NodeName = strings.TrimSpace(v)
		} else if h, err := os.Hostname(); err == nil {
			c.NodeName = h
		}
	}
	return c, fs.Args(), nil
}

// parseFlags parses args against every setting's flag and returns the
// values given, by flag name (several for a list setting). It returns
// errVersion for --version.
func parseFlags(name string, args []string) (*flag.FlagSet, map[string][]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	given := map[string][]string{}
	for _, s := range settings {
		switch {
		case s.list:
			fs.Var((*repeated)(&[]string{}), s.flag, s.usage)
		case s.isBool():
			fs.Var(boolText{new(string)}, s.flag, s.usage)
		default:
			fs.String(s.flag, "", s.usage)
		}
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return fs, nil, err
		}
		// The flag package quotes some values but not all (an unknown
		// flag's name is printed as given).
		return fs, nil, errors.New(pathesc.Display(err.Error()))
	}
	if *showVersion {
		return fs, nil, errVersion
	}
	fs.Visit(func(f *flag.Flag) {
		switch v := f.Value.(type) {
		case *repeated:
			given[f.Name] = *v
		case boolText:
			given[f.Name] = []string{*v.v}
		default:
			given[f.Name] = []string{f.Value.String()}
		}
	})
	delete(given, "version")
	return fs, given, nil
}

func lookup(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	return v, v != ""
}

// durationSyntax matches what time.ParseDuration accepts, so that a
// value it rejects anyway is known to be out of range.
var durationSyntax = regexp.MustCompile(`^[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+$`)

// parseDuration parses a Go duration from lo to hi inclusive.
func parseDuration(s string, lo, hi time.Duration) (time.Duration, error) {
	s = strings.TrimSpace(s)
	rng := "must be from " + short(lo) + " to " + short(hi)
	d, err := time.ParseDuration(s)
	switch {
	case err != nil && durationSyntax.MatchString(s) && strings.ContainsAny(s, "0123456789"):
		return 0, errors.New("out of range: " + rng)
	case err != nil:
		return 0, errors.New("not a duration (examples: 30s, 1m, 500ms)")
	case d < lo || d > hi:
		return 0, errors.New(rng)
	}
	return d, nil
}

// short writes a duration without zero units: 24h rather than 24h0m0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// listenAddr is the host:port the server binds.
func (c *config) listenAddr() string {
	return net.JoinHostPort(strings.Trim(c.BindAddress, "[]"), strconv.Itoa(c.Port))
}

// agentConfig maps the settings onto the monitor's configuration.
func (c *config) agentConfig() agent.Config {
	ac := agent.DefaultConfig()
	ac.Interval = c.Interval
	ac.Timeout = c.Timeout
	ac.Hostname = c.NodeName
	ac.RequireWriteCheck = c.RequireWriteCheck
	ac.ProbeInRoot = c.ProbeLocation == "root"
	ac.Grouping = c.GroupChecks
	if ac.MinRetry > c.Interval {
		ac.MinRetry = c.Interval
	}
	return ac
}
