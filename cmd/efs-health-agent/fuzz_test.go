package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/internal/discovery"
)

// FuzzParseConfig feeds arbitrary environment values and flags to the
// parser: it must never panic, and every error must name a setting.
func FuzzParseConfig(f *testing.F) {
	f.Add("30s", "5s", "9910", "/a,/b", "--check-interval=1m")
	f.Add("-1s", "0", "65536", "rel", "--mount=")
	f.Add("1h", "1ns", "1", ",,,", "--port=\x00")
	f.Add("9223372036854775807ns", "100ms", "9910", "/a", "--enable-debug")
	f.Add("2562048h", "24h", "9910", "/a", "--version")
	f.Add("100ms", "100ms", "9910", "/a", "--discovery-interval=1ns")
	f.Fuzz(func(t *testing.T, interval, timeout, port, mounts, flag string) {
		env := map[string]string{
			"HEALTH_CHECK_INTERVAL": interval, "HEALTH_CHECK_TIMEOUT": timeout,
			"HEALTH_PORT": port, "HEALTH_MOUNTS": mounts,
		}
		c, _, err := parseConfig("fuzz", []string{flag}, func(k string) string { return env[k] }, &bytes.Buffer{})
		if errors.Is(err, errVersion) {
			return
		}
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, "HEALTH_") && !strings.Contains(msg, "--") && !strings.Contains(msg, "flag") {
				t.Fatalf("error names no setting: %q", msg)
			}
			return
		}
		if c.Interval < minCheckInterval || c.Interval > maxCheckInterval || c.Timeout < minCheckInterval ||
			c.Timeout > c.Interval || c.Port < 1 || c.Port > 65535 ||
			c.DiscoveryInterval < discovery.MinInterval || c.DiscoveryInterval > discovery.MaxInterval {
			t.Fatalf("accepted invalid config %+v", c)
		}
		for _, m := range c.Mounts {
			if !strings.HasPrefix(m, "/") {
				t.Fatalf("accepted relative mount %q", m)
			}
		}
	})
}
