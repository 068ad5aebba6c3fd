package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/net/html"

	"github.com/efs-health-agent/efs-health-agent/agent"
	"github.com/efs-health-agent/efs-health-agent/httpapi"
	"github.com/efs-health-agent/efs-health-agent/internal/pathesc"
)

// FuzzHostileMountPaths renders mount paths with any bytes (quotes,
// newlines, invalid UTF-8, markup, controls) in /healthz/mounts, /healthz
// and the status page: the JSON must stay valid with one entry per mount,
// keyed by the path escaped with pathesc.Escape, and the HTML must show
// each path escaped with pathesc.Display, as text, never as markup.
func FuzzHostileMountPaths(f *testing.F) {
	f.Add("/mnt/\"quoted\"", "/mnt/line\nbreak")
	f.Add("/mnt/\xff\xfe", "/mnt/<script>alert(1)</script>")
	f.Add("/mnt/\u2028", "/mnt/a\\b")
	f.Add("/mnt/a\xff", "/mnt/a\xfe")
	f.Add("/mnt/a\xff", `/mnt/a\xff`)
	f.Add("/mnt/\x1b[2J\u202e", "/mnt/\x00\r\f")
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == b {
			return
		}
		if a > b {
			a, b = b, a
		}
		src := &fakeSource{live: true,
			sum: agent.Summary{Mounts: 2, Unhealthy: 1, UnhealthyPaths: []string{b}},
			sts: []*agent.MountStatus{
				{Mount: &agent.Mount{Path: a}, State: agent.StateHealthy, LastError: b},
				{Mount: &agent.Mount{Path: b}, State: agent.StateUnhealthy, LastError: a},
			}}
		h := httpapi.NewRouter(src, httpapi.Options{})
		_, body, _ := get(t, h, http.MethodGet, "/healthz/mounts")
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &raw); err != nil {
			t.Fatalf("invalid JSON for %q, %q: %v\n%s", a, b, err, body)
		}
		if len(raw) != 2 {
			t.Fatalf("%d entries for 2 mounts", len(raw))
		}
		for _, p := range []string{a, b} {
			var m httpapi.MountJSON
			if err := json.Unmarshal(raw[pathesc.Escape(p)], &m); err != nil || m.MountPath != pathesc.Escape(p) {
				t.Fatalf("no entry %q for %q: %v\n%s", pathesc.Escape(p), p, err, body)
			}
		}
		_, page, _ := get(t, h, http.MethodGet, "/")
		// Parsed back, each path is the text of its <code> cell: markup in
		// a path stays text, and no control or bidi character is left.
		codes := codeTexts(t, page)
		if len(codes) != 2 {
			t.Fatalf("%d mount cells in the page, want 2", len(codes))
		}
		for _, p := range []string{a, b} {
			if !codes[pathesc.Display(p)] {
				t.Fatalf("path %q not rendered as %q; cells %v", p, pathesc.Display(p), codes)
			}
		}
		for _, r := range page {
			if !unicode.IsPrint(r) && r != '\n' {
				t.Fatalf("the page holds %U", r)
			}
		}
		code, text, _ := get(t, h, http.MethodGet, "/healthz")
		if code != 503 || strings.Count(strings.TrimSpace(text), "\n") != 0 {
			t.Fatalf("/healthz = %d %q: the body must stay one line", code, text)
		}
	})
}

// codeTexts returns the text of every <code> element of page.
func codeTexts(t *testing.T, page string) map[string]bool {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "code" {
			var b strings.Builder
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type == html.TextNode {
					b.WriteString(c.Data)
				}
			}
			out[b.String()] = true
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out
}
