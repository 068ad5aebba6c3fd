package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
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

	// origin names where each setting came from ("--port", "HEALTH_PORT"
	// or "default"), so errors name what the user has to fix.
	origin map[string]string
}

// setting describes one configuration knob.
type setting struct {
	key, flag, env, def, usage string
}

var settings = []setting{
	{"interval", "check-interval", "HEALTH_CHECK_INTERVAL", "30s", "how often each mount is checked (Go duration, 100ms to 24h)"},
	{"timeout", "check-timeout", "HEALTH_CHECK_TIMEOUT", "5s", "deadline of one check (100ms to 24h); must not exceed the interval"},
	{"port", "port", "HEALTH_PORT", "9910", "TCP port of the health, metrics and status endpoints (1-65535)"},
	{"bind", "bind-address", "HEALTH_BIND_ADDRESS", "", "address to listen on (default: all interfaces)"},
	{"mounts", "mount", "HEALTH_MOUNTS", "", "absolute mount path to check; flag repeatable, variable comma-separated"},
	{"node", "node-name", "HEALTH_NODE_NAME", "", "name of this node in probe file names and service.instance.id (default: $NODE_NAME, else the hostname)"},
	{"loglevel", "log-level", "HEALTH_LOG_LEVEL", "info", "log level: debug, info, warn or error"},
	{"logformat", "log-format", "HEALTH_LOG_FORMAT", "text", "log format: text or json"},
	{"maxconns", "max-connections", "HEALTH_MAX_CONNECTIONS", "256", "most HTTP connections open at once (16-65536); at the cap the longest-idle one is closed to admit a new one"},
	{"debug", "enable-debug", "HEALTH_ENABLE_DEBUG", "false", "serve /debug/pprof/ (off by default); the flag alone means true, or give --enable-debug=false"},
	{"fstypes", "discover-fstypes", "HEALTH_DISCOVER_FSTYPES", "", "comma-separated filesystem types to discover from the mount table, e.g. nfs4,nfs,efs (default: no discovery)"},
	{"prefix", "discover-prefix", "HEALTH_DISCOVER_PREFIX", "/var/lib/kubelet/pods", "only mounts under this directory are discovered"},
	{"mountinfo", "mountinfo", "HEALTH_MOUNTINFO", "/proc/self/mountinfo", "mount table to follow (e.g. /host/proc/1/mountinfo)"},
	{"statedir", "efs-state-dir", "HEALTH_EFS_STATE_DIR", "/var/run/efs", "efs-utils state directory, read to tell the file system, access point and service of a mount through efs-proxy (source 127.0.0.1:<subpath>)"},
	{"discoveryinterval", "discovery-interval", "HEALTH_DISCOVERY_INTERVAL", "10s", "longest time between two reads of the mount table, 1s to 1h (changes are also noticed at once)"},
	{"requirewrite", "require-write-check", "HEALTH_REQUIRE_WRITE_CHECK", "false", "count a refused create of the probe file (EACCES/EPERM, e.g. root squash) as the failure permission_denied instead of checking the mount read-only in mode write-denied"},
	{"traceslow", "trace-slow-threshold", "HEALTH_TRACE_SLOW_THRESHOLD", "500ms", "a check at least this slow always keeps its spans, like a failed one; faster healthy checks are sampled (OTEL_TRACES_SAMPLER)"},
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

// isBool reports whether a setting is a boolean (its default is one).
func (s setting) isBool() bool { return s.def == "true" || s.def == "false" }

// usage prints the help text documenting every setting.
func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, `Usage:
  efs-health-agent [flags]          run the agent
  efs-health-agent check [flags] PATH...
                                    check each PATH once and print the result
                                    (exit 0 when all are healthy, 1 otherwise)
  efs-health-agent --version        print the version

Exit status 2 means a setting is invalid; the message names it.

Settings (flag, environment variable, default). Flags win over the environment.
`)
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = "none"
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

// parseConfig reads the environment (through getenv) and args. It returns
// flag.ErrHelp for --help, and otherwise an error naming the setting and
// the bad value.
func parseConfig(name string, args []string, getenv func(string) string, out io.Writer) (*config, []string, error) {
	raw := map[string]string{}
	origin := map[string]string{}
	for _, s := range settings {
		raw[s.key], origin[s.key] = s.def, "default"
		if v, ok := lookup(getenv, s.env); ok {
			raw[s.key], origin[s.key] = v, s.env
		}
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	vals := map[string]*string{}
	var mounts repeated
	for _, s := range settings {
		if s.key == "mounts" {
			fs.Var(&mounts, s.flag, s.usage)
			continue
		}
		if s.isBool() {
			v := new(string)
			fs.Var(boolText{v}, s.flag, s.usage)
			vals[s.key] = v
			continue
		}
		vals[s.key] = fs.String(s.flag, "", s.usage)
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(out, fs)
			return nil, nil, err
		}
		// The flag package quotes some values but not all (an unknown
		// flag's name is printed as given).
		return nil, nil, errors.New(pathesc.Display(err.Error()))
	}
	if *showVersion {
		return nil, nil, errVersion
	}
	fs.Visit(func(f *flag.Flag) {
		for _, s := range settings {
			if s.flag == f.Name && s.key != "mounts" {
				raw[s.key], origin[s.key] = *vals[s.key], "--"+s.flag
			}
		}
	})
	c := &config{origin: origin}
	var mountList []string
	if len(mounts) > 0 {
		mountList, origin["mounts"] = mounts, "--mount"
	} else if raw["mounts"] != "" {
		for _, p := range strings.Split(raw["mounts"], ",") {
			if p = strings.TrimSpace(p); p != "" {
				mountList = append(mountList, p)
			}
		}
	}
	bad := func(key, why string) error {
		return fmt.Errorf("invalid %s=%q: %s", origin[key], raw[key], why)
	}
	var err error
	if c.Interval, err = parseDuration(raw["interval"], minCheckInterval, maxCheckInterval); err != nil {
		return nil, nil, bad("interval", err.Error())
	}
	if c.Timeout, err = parseDuration(raw["timeout"], minCheckInterval, maxCheckInterval); err != nil {
		return nil, nil, bad("timeout", err.Error())
	}
	if c.Timeout > c.Interval {
		iv := fmt.Sprintf("%s=%q", origin["interval"], raw["interval"])
		if origin["interval"] == "default" {
			iv = raw["interval"] + ", the default"
		}
		return nil, nil, bad("timeout", "must not exceed the check interval ("+iv+")")
	}
	port, err := strconv.Atoi(strings.TrimSpace(raw["port"]))
	if err != nil || port < 1 || port > 65535 {
		return nil, nil, bad("port", "must be a port number from 1 to 65535")
	}
	c.Port = port
	c.BindAddress = strings.TrimSpace(raw["bind"])
	if c.BindAddress != "" && net.ParseIP(strings.Trim(c.BindAddress, "[]")) == nil && c.BindAddress != "localhost" {
		return nil, nil, bad("bind", "must be an IP address or localhost")
	}
	seen := map[string]bool{}
	for _, p := range mountList {
		if err := agent.ValidatePath(p); err != nil {
			return nil, nil, fmt.Errorf("invalid %s=%q: %w", origin["mounts"], p, err)
		}
		if !seen[p] {
			seen[p] = true
			c.Mounts = append(c.Mounts, p)
		}
	}
	c.NodeName = strings.TrimSpace(raw["node"])
	if c.NodeName == "" {
		if v, ok := lookup(getenv, "NODE_NAME"); ok && strings.TrimSpace(v) != "" {
			c.NodeName = strings.TrimSpace(v)
		} else if h, err := os.Hostname(); err == nil {
			c.NodeName = h
		}
	}
	switch c.LogLevel = strings.ToLower(raw["loglevel"]); c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return nil, nil, bad("loglevel", "must be debug, info, warn or error")
	}
	switch c.LogFormat = strings.ToLower(raw["logformat"]); c.LogFormat {
	case "text", "json":
	default:
		return nil, nil, bad("logformat", "must be text or json")
	}
	if c.MaxConnections, err = strconv.Atoi(strings.TrimSpace(raw["maxconns"])); err != nil || c.MaxConnections < 16 || c.MaxConnections > 65536 {
		return nil, nil, bad("maxconns", "must be a number from 16 to 65536")
	}
	if c.EnableDebug, err = strconv.ParseBool(raw["debug"]); err != nil {
		return nil, nil, bad("debug", "must be true or false")
	}
	for _, t := range strings.Split(raw["fstypes"], ",") {
		if t = strings.TrimSpace(t); t != "" {
			if strings.ContainsAny(t, " \t/") {
				return nil, nil, bad("fstypes", fmt.Sprintf("%q is not a filesystem type", t))
			}
			c.DiscoverFSTypes = append(c.DiscoverFSTypes, t)
		}
	}
	c.DiscoverPrefix = strings.TrimSpace(raw["prefix"])
	if err := agent.ValidatePath(c.DiscoverPrefix); err != nil {
		return nil, nil, bad("prefix", "must be an absolute, clean directory path")
	}
	c.MountInfo = strings.TrimSpace(raw["mountinfo"])
	if err := agent.ValidatePath(c.MountInfo); err != nil {
		return nil, nil, bad("mountinfo", "must be an absolute, clean file path")
	}
	c.EFSStateDir = strings.TrimSpace(raw["statedir"])
	if err := agent.ValidatePath(c.EFSStateDir); err != nil {
		return nil, nil, bad("statedir", "must be an absolute, clean directory path")
	}
	if c.DiscoveryInterval, err = parseDuration(raw["discoveryinterval"], discovery.MinInterval, discovery.MaxInterval); err != nil {
		return nil, nil, bad("discoveryinterval", err.Error())
	}
	if c.TraceSlowThreshold, err = parseDuration(raw["traceslow"], time.Millisecond, agent.MaxInterval); err != nil {
		return nil, nil, bad("traceslow", err.Error())
	}
	if c.RequireWriteCheck, err = strconv.ParseBool(strings.TrimSpace(raw["requirewrite"])); err != nil {
		return nil, nil, bad("requirewrite", "must be true or false")
	}
	return c, fs.Args(), nil
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
	if ac.MinRetry > c.Interval {
		ac.MinRetry = c.Interval
	}
	return ac
}
