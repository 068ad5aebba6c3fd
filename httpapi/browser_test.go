package httpapi_test

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/efs-health-agent/efs-health-agent/httpapi"
)

// chromium returns the headless browser, skipping (or failing in CI) when
// it is not installed.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; make test installs the Debian package as root")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestStatusPageInBrowser renders the status page in headless Chromium:
// the DOM it builds has the rows worst first, the node, the version, the
// links to the other pages and the sparklines' scales, and the screenshot
// shows the state badges in their colours.
func TestStatusPageInBrowser(t *testing.T) {
	bin := chromium(t)
	srv := httptest.NewServer(httpapi.NewRouter(statusFixture(), statusOptions()))
	defer srv.Close()

	dom := string(runChromium(t, bin, "--dump-dom", srv.URL+"/"))
	var order []string
	for _, m := range rowRe.FindAllStringSubmatch(dom, -1) {
		order = append(order, m[1])
	}
	if got := strings.Join(order, ","); got != "hung,unhealthy,pending,healthy,healthy" {
		t.Fatalf("rendered rows: %q\n%s", got, dom)
	}
	if !strings.Contains(dom, "<polyline") || !strings.Contains(dom, "5 mounts") {
		t.Fatalf("rendered DOM lacks the sparkline or summary:\n%s", dom)
	}
	for _, want := range []string{`<strong id="node">ip-10-0-1-17.ec2.internal</strong>`, `<span id="version">v1.4.2</span>`,
		`href="healthz/mounts"`, `href="metrics"`, `href="debug/checks"`, `<span class="max">40.0</span><span class="zero">0</span>`} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %s", want)
		}
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	runChromium(t, bin, "--screenshot="+shot, "--window-size=1200,700", "--hide-scrollbars", srv.URL+"/")
	if dir := os.Getenv("STATUS_SCREENSHOT_DIR"); dir != "" {
		b, _ := os.ReadFile(shot)
		_ = os.WriteFile(filepath.Join(dir, "status.png"), b, 0o644)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	for name, c := range map[string]color.RGBA{
		"hung":      {0x6a, 0x1b, 0x9a, 0xff},
		"unhealthy": {0xc6, 0x28, 0x28, 0xff},
		"healthy":   {0x2e, 0x7d, 0x32, 0xff},
		"pending":   {0x75, 0x75, 0x75, 0xff},
	} {
		if n := countColor(img, c); n < 50 {
			t.Errorf("screenshot shows %d pixels of the %s badge colour", n, name)
		}
	}
}

func countColor(img image.Image, want color.RGBA) int {
	n := 0
	b := img.Bounds()
	near := func(a, b uint32) bool { d := int(a>>8) - int(b); return d > -8 && d < 8 }
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r, uint32(want.R)) && near(g, uint32(want.G)) && near(bl, uint32(want.B)) {
				n++
			}
		}
	}
	return n
}
